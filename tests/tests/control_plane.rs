//! A control plane on PostgreSQL that goes away while the server runs (the network to it cut
//! by a proxy the test holds): requests that need it are refused with 503 and words that say
//! so, never a 500, the server stays up, and it serves again by itself once PostgreSQL can be
//! reached.

use std::time::{Duration, Instant};

use silo_core::db;
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

/// Servers on different machines may share a control plane on PostgreSQL but not the tenants'
/// files: until Silo runs as a cluster, a second server under another name is refused while
/// the first's heartbeat is fresh, and starts once it stopped (or went silent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_control_plane_is_refused_while_the_first_lives() {
    let Some(url) = postgres_database().await else { return };
    let on = |node: &'static str| {
        let url = url.clone();
        move |s: &mut silo_web::settings::Settings| {
            s.fleet.control.url = Some(Secret::new(url));
            s.fleet.cluster.node = Some(node.to_owned());
        }
    };
    let first = TestServer::start_with(on("n1")).await.unwrap();
    let refused =
        TestServer::start_with(on("n2")).await.err().expect("a second server is refused").to_string();
    assert!(refused.contains("another server uses this control plane: node `n1`"), "{refused}");
    let nodes = first.tenancy.nodes().list().await.unwrap();
    assert_eq!(nodes.len(), 1, "the refused server left no row: {nodes:?}");
    let (n1, live) = &nodes[0];
    assert_eq!(
        (n1.name.as_str(), n1.advertise.clone(), *live),
        ("n1", format!("http://{}", first.addr), true)
    );

    // A stop leaves: the next server starts.
    first.stop().await.unwrap();
    let second = TestServer::start_with(on("n2")).await.unwrap();
    let control = second.tenancy.control().writer().clone();
    // A server killed without leaving keeps its row, which counts only while its heartbeat is
    // fresh; a server restarting under its own name is not refused by its old row.
    let insert =
        "INSERT INTO nodes (name, advertise, started_at, heartbeat_at) VALUES (?1, 'http://gone', ?2, ?2)";
    let long_ago = second.tenancy.control().now().minus(Duration::from_secs(60));
    db::query(insert).bind("killed").bind(&long_ago).execute(&control).await.unwrap();
    let now = second.tenancy.control().now();
    db::query(insert).bind("n3").bind(&now).execute(&control).await.unwrap();
    second.stop().await.unwrap();
    let third = TestServer::start_with(on("n3")).await.unwrap();
    let live: Vec<String> = third
        .tenancy
        .nodes()
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, live)| *live)
        .map(|(n, _)| n.name)
        .collect();
    assert_eq!(live, ["n3"], "the killed server's silence expired, n3 took its own row");
    third.stop().await.unwrap();
}

/// A data directory keeps to the control plane it started with, and only an empty database
/// (or Silo's own) becomes a control plane: each mistake is refused in words before anything
/// is written.
#[tokio::test]
async fn a_data_directory_keeps_its_control_plane_and_a_foreign_database_is_refused() {
    let Some(url) = postgres_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let open = |url: Option<&str>| {
        let mut settings = silo_tenancy::Settings::for_data_dir(dir.path().join("data"));
        settings.control.url = url.map(Secret::new);
        silo_web::schema::open(settings)
    };
    // On PostgreSQL: the data directory says so, and a start without the URL is refused
    // instead of making an empty control.db.
    open(Some(&url)).await.unwrap().shutdown().await;
    let refused = open(None).await.err().expect("refused without the URL").to_string();
    assert!(refused.contains("is on PostgreSQL") && refused.contains("[control] url"), "{refused}");
    assert!(!dir.path().join("data/control.db").exists(), "no control.db was made");
    // An empty URL is no URL (the same refusal).
    let refused = open(Some("  ")).await.err().expect("refused with an empty URL").to_string();
    assert!(refused.contains("is on PostgreSQL"), "{refused}");
    open(Some(&url)).await.unwrap().shutdown().await;
    // Another database (a typo in the URL, another installation's): refused before anything
    // is written there, and the data directory still opens on its own.
    let other = postgres_database().await.unwrap();
    let refused = open(Some(&other)).await.err().expect("refused: another database").to_string();
    assert!(refused.contains("not this data directory's control plane"), "{refused}");
    assert!(refused.contains("an empty database"), "{refused}");
    let untouched = db::Db::postgres(&other, 1).await.unwrap();
    let tables: i64 = db::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&untouched)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing was migrated into the other database");
    untouched.close().await;
    open(Some(&url)).await.unwrap().shutdown().await;

    // On control.db: a URL is refused (the control plane is copied there first, by hand:
    // `silo control copy-to-postgres`).
    let embedded = tempfile::tempdir().unwrap();
    let mut settings = silo_tenancy::Settings::for_data_dir(embedded.path());
    silo_web::schema::open(settings.clone()).await.unwrap().shutdown().await;
    settings.control.url = Some(Secret::new(url.clone()));
    let refused = silo_web::schema::open(settings).await.err().expect("refused").to_string();
    assert!(refused.contains("has its control plane in control.db"), "{refused}");

    // A database that holds someone else's tables is left as it was.
    let foreign = postgres_database().await.unwrap();
    let other = db::Db::postgres(&foreign, 1).await.unwrap();
    db::query("CREATE TABLE users (id integer)").execute(&other).await.unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let mut settings = silo_tenancy::Settings::for_data_dir(fresh.path());
    settings.control.url = Some(Secret::new(foreign));
    let refused = silo_web::schema::open(settings.clone()).await.err().expect("refused").to_string();
    assert!(refused.contains("already holds tables and is not a Silo control plane"), "{refused}");
    let tables: i64 =
        db::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_one(&other)
            .await
            .unwrap();
    assert_eq!(tables, 1, "nothing was migrated into it");
    other.close().await;

    // A URL of another database kind says what is expected.
    settings.control.url = Some(Secret::new("mysql://silo@127.0.0.1/silo"));
    let refused = silo_web::schema::open(settings).await.err().expect("refused").to_string();
    assert!(refused.contains("starts with postgres://"), "{refused}");
}

/// Writers wait for their turn before they take a connection: while one write transaction is
/// open and another write waits behind it, reads still get a connection (a pool of two here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_writers_leave_the_connections_to_readers() {
    let Some(url) = postgres_database().await else { return };
    let server = TestServer::start_with(move |s| {
        s.fleet.control.url = Some(Secret::new(url));
        s.fleet.control.max_connections = Some(2);
    })
    .await
    .unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    assert_eq!(ops.call("GET", "/tenants", None).await.unwrap().0, 200);
    let held = server.tenancy.control().writer().begin().await.unwrap();
    let writing = {
        let (addr, token) = (server.addr, token.clone());
        tokio::spawn(async move {
            let new = serde_json::json!({ "slug": "waits" });
            ApiClient::new(addr, Some(&token)).call("POST", "/tenants", Some(new)).await.unwrap().0
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writing.is_finished(), "the write waits for the open transaction");
    let started = Instant::now();
    let (status, body) = ops.call("GET", "/tenants", None).await.unwrap();
    assert_eq!(status, 200, "a read gets a connection while a write waits: {body}");
    assert!(started.elapsed() < Duration::from_secs(2), "at once, not after the pool's timeout");
    held.commit().await.unwrap();
    assert_eq!(writing.await.unwrap(), 201, "the write goes through once its turn comes");
    server.stop().await.unwrap();
}

/// PostgreSQL's text cannot hold a NUL character: a name with one is refused as the caller's
/// input (422), not a 500 (at the API's edge; the database's refusal maps to 422 as well).
#[tokio::test]
async fn a_nul_character_is_refused_in_words_on_postgres() {
    let Some(url) = postgres_database().await else { return };
    let server = TestServer::start_with(move |s| s.fleet.control.url = Some(Secret::new(url))).await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&server.operator_token("ops@example.com").await.unwrap()));
    assert_eq!(
        ops.call("POST", "/tenants", Some(serde_json::json!({ "slug": "acme" }))).await.unwrap().0,
        201
    );
    let (status, body) = ops
        .call("PATCH", "/tenants/acme", Some(serde_json::json!({ "name": "Acme\u{0}Corp" })))
        .await
        .unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("name")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("NUL character"), "{body}");
    let (_, tenant) = ops.call("GET", "/tenants/acme", None).await.unwrap();
    assert_eq!(tenant["name"], "acme", "nothing changed: {tenant}");
    server.stop().await.unwrap();
}

/// A running server renews its heartbeat (every second here), so it stays live however long
/// it runs; a clean stop removes its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_renews_its_heartbeat_and_leaves_at_its_stop() {
    let Some(url) = postgres_database().await else { return };
    let control = url.clone();
    let server = TestServer::start_with(move |s| {
        s.fleet.control.url = Some(Secret::new(url));
        s.fleet.cluster.heartbeat_seconds = 1;
    })
    .await
    .unwrap();
    let nodes = server.tenancy.nodes();
    let (registered, _) = nodes.list().await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (renewed, _) = nodes.list().await.unwrap().remove(0);
    assert_eq!(renewed.started_at, registered.started_at);
    assert!(renewed.heartbeat_at > registered.heartbeat_at, "renewed: {registered:?} → {renewed:?}");
    server.stop().await.unwrap();
    let control = db::Db::postgres(&control, 1).await.unwrap();
    let left: i64 = db::query_scalar("SELECT count(*) FROM nodes").fetch_one(&control).await.unwrap();
    assert_eq!(left, 0, "a clean stop leaves");
}

/// On control.db the one server has every live tenant (no owners are recorded there):
/// `silo cluster nodes` and the Fleet page count them, not 0.
#[tokio::test]
async fn the_one_server_of_control_db_counts_every_tenant() {
    let server = TestServer::start().await.unwrap();
    assert!(server.tenancy.control().is_embedded());
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let counted: Vec<i64> =
        server.tenancy.nodes().list().await.unwrap().iter().map(|(n, _)| n.tenants).collect();
    assert_eq!(counted, [1]);
    server.stop().await.unwrap();
}
