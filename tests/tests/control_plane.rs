//! A control plane on PostgreSQL that goes away while the server runs (the network to it cut
//! by a proxy the test holds): requests that need it are refused with 503 and words that say
//! so, never a 500, the server stays up, and it serves again by itself once PostgreSQL can be
//! reached.

use std::time::{Duration, Instant};

use silo_core::db::testing::{Proxy, postgres_database};
use silo_e2e::{ApiClient, TestServer};
use silo_web::settings::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_answers_503_and_the_server_serves_again_once_it_is_back() {
    let Some(url) = postgres_database().await else { return };
    let proxy = Proxy::start(Proxy::upstream_of(&url)).await;
    let through = proxy.url_for(&url);
    let server =
        TestServer::start_with(move |s| s.fleet.control.url = Some(Secret::new(through))).await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&server.operator_token("ops@example.com").await.unwrap()));
    assert_eq!(ada.get("/account").await.unwrap().status, 200);
    assert_eq!(ops.call("GET", "/tenants", None).await.unwrap().0, 200);

    proxy.cut();
    let page = ada.get("/account").await.unwrap();
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("cannot reach its database"), "{}", page.body);
    let (status, body) = ops.call("GET", "/tenants", None).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot reach its database"), "{body}");
    let (status, body) =
        ops.call("POST", "/tenants", Some(serde_json::json!({ "slug": "beta" }))).await.unwrap();
    assert_eq!(status, 503, "a write is refused the same way: {body}");
    assert_eq!(server.visitor().get("/healthz").await.unwrap().status, 200, "the process stays up");

    proxy.heal();
    let healed = Instant::now();
    loop {
        let (status, _) = ops.call("GET", "/tenants", None).await.unwrap();
        if status == 200 {
            break;
        }
        assert!(healed.elapsed() < Duration::from_secs(20), "still {status} 20 s after PostgreSQL came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ada.get("/account").await.unwrap().status, 200, "the session still works");
    let (status, body) =
        ops.call("POST", "/tenants", Some(serde_json::json!({ "slug": "beta" }))).await.unwrap();
    assert_eq!(status, 201, "the refused write was not half-done: {body}");
    server.stop().await.unwrap();
}
