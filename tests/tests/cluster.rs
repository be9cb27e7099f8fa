//! Servers of a cluster: several `silo serve` on one PostgreSQL control plane and one backup
//! store (a shared directory here), each owning the tenants it serves (see
//! `silo_tenancy::ownership`): any server answers for any tenant (forwarded to its owner), a
//! server cut off from PostgreSQL stops writing before another may take its tenants over, and
//! the other takes them over from the store once its lease ran out.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use silo_core::db::testing::{Proxy, postgres_database};
use silo_core::{TenantId, TenantRef};
use silo_e2e::{ApiClient, TestServer};
use silo_web::settings::{Secret, Settings};

const SECRET: &str = "a-cluster-secret-for-the-tests";
const KEY: &str = "8f3a9c1d2e4b5f60718293a4b5c6d7e8f90112233445566778899aabbccddee0";

/// The settings of server `name` of a test cluster on `url`, sharing the store `store`.
fn node(name: &str, url: &str, store: &Path) -> impl FnOnce(&mut Settings) + use<> {
    let (name, url, store) = (name.to_owned(), url.to_owned(), store.to_owned());
    move |s: &mut Settings| {
        s.fleet.control.url = Some(Secret::new(url));
        s.fleet.cluster.node = Some(name);
        s.fleet.cluster.secret = Some(Secret::new(SECRET.to_owned()));
        s.fleet.cluster.heartbeat_seconds = 1;
        s.fleet.backup.local_dir = Some(store);
        s.fleet.backup.master_key = Some(Secret::new(KEY.to_owned()));
        // Continuous backup (the scheduler's loop runs it): what a takeover restores from.
        s.fleet.backup.schedule = true;
    }
}

async fn tenant_id(server: &TestServer, slug: &str) -> TenantId {
    server.tenancy.tenant(&slug.parse::<TenantRef>().unwrap()).await.unwrap().id
}

async fn file_of(server: &TestServer, id: TenantId) -> PathBuf {
    let tenant = server.tenancy.control().tenant_by_id(id).await.unwrap();
    server.tenancy.tenant_path(&tenant).unwrap()
}

/// The restore staging files (`.restore-`) in `dir`: prepared copies, restores under way.
fn restore_staging(dir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>());
    names
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_answers_on_every_server_forwarded_to_its_owner() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let n1 = TestServer::start_with(node("n1", &url, store.path())).await.unwrap();
    n1.sign_up("ada@example.com", "acme").await.unwrap();
    // n2 has more room than n1 (no tenant): what it provisions stays there.
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    n2.sign_up("eve@example.com", "evil").await.unwrap();
    let (acme, evil) = (tenant_id(&n1, "acme").await, tenant_id(&n1, "evil").await);
    assert!(n1.tenancy.is_here(acme) && !n1.tenancy.is_here(evil), "each tenant is its provisioner's");
    assert!(n2.tenancy.is_here(evil) && !n2.tenancy.is_here(acme));

    // Ada's token works on both servers; n2 forwards her requests to n1, which owns acme.
    let token = n1.personal_token("ada@example.com", "acme").await.unwrap();
    let (on1, on2) = (ApiClient::new(n1.addr, Some(&token)), ApiClient::new(n2.addr, Some(&token)));
    let (status, project) =
        on2.call("POST", "/w/acme/projects", Some(json!({ "name": "Forwarded" }))).await.unwrap();
    assert_eq!(status, 201, "{project}");
    for i in 0..5 {
        let body = json!({ "project_id": project["id"], "title": format!("task {i}") });
        let (status, task) = on2.call("POST", "/w/acme/tasks", Some(body)).await.unwrap();
        assert_eq!(status, 201, "{task}");
    }
    let (status, tasks) = on1.call("GET", "/w/acme/tasks?limit=50", None).await.unwrap();
    assert_eq!((status, tasks["items"].as_array().unwrap().len()), (200, 5), "written on n1's file: {tasks}");
    assert!(!file_of(&n2, acme).await.exists(), "n2 never opened acme's file");
    assert!(!n2.tenancy.is_here(acme), "nor took it");

    // Pages too, with a session made on n2.
    let ada = n2.sign_in("ada@example.com").await.unwrap();
    let page = ada.get("/w/acme/").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Forwarded"), "the project is on the page");

    // A client cannot pass for a server: a wrong secret is forwarded like any request, and its
    // address header is not believed; only the secret makes n2 answer for itself (and then it
    // refuses, 503: acme is n1's).
    let raw = reqwest::Client::new();
    let forged = raw
        .get(n2.url("/api/v1/w/acme/tasks"))
        .bearer_auth(&token)
        .header("x-silo-forwarded", "guess")
        .header("x-silo-client", "10.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200, "forwarded to the owner as usual");
    // A forwarded answer of known size goes back whole, with its length (not in chunks, whose
    // small writes the client's delayed ACK held ~40 ms).
    let length = forged.content_length();
    let bytes = forged.bytes().await.unwrap();
    assert_eq!(length, Some(bytes.len() as u64), "the forwarded answer has its Content-Length");
    // A body too large to forward is refused as the API refuses it, in JSON.
    let huge = raw
        .post(n2.url("/api/v1/w/acme/tasks"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let refusal: serde_json::Value = huge.json().await.unwrap();
    assert_eq!(refusal["error"]["code"], "too_large", "{refusal}");
    let peer = raw
        .get(n2.url("/api/v1/w/acme/tasks"))
        .bearer_auth(&token)
        .header("x-silo-forwarded", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(peer.status(), 503, "a forwarded request is never forwarded again");
    let body = peer.text().await.unwrap();
    assert!(body.contains("served by another server of the cluster (node `n1`)"), "{body}");

    // A session or token revoked on one server is refused on the others at once: n1 (which
    // remembers ada's token and session) hears of n2's revocations.
    let on_n1 = n1.sign_in("ada@example.com").await.unwrap();
    assert_eq!(on1.call("GET", "/w/acme/tasks", None).await.unwrap().0, 200);
    assert_eq!(on_n1.get("/account").await.unwrap().status, 200);
    let ada_id = n2.accounts.users().by_email("ada@example.com").await.unwrap().id;
    n2.accounts.tokens().revoke_all(&ada_id, "test").await.unwrap();
    n2.accounts.sessions().revoke_all(&ada_id).await.unwrap();
    let revoked = Instant::now();
    loop {
        let (token, page) =
            (on1.call("GET", "/w/acme/tasks", None).await.unwrap().0, on_n1.get("/account").await.unwrap());
        if token == 401 && page.status == 303 {
            break;
        }
        assert!(revoked.elapsed() < Duration::from_secs(2), "n1 still accepts them: {token} {}", page.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revoked on n2, refused on n1 after {:?}", revoked.elapsed());

    // The same node name from another data directory is refused while n1's lease is current.
    let twin = TestServer::start_with(node("n1", &url, store.path())).await.err().expect("a twin is refused");
    assert!(twin.to_string().contains("node name `n1` is in use"), "{twin}");

    // The fleet page lists both servers.
    let servers = n1.tenancy.nodes().list().await.unwrap();
    let names: Vec<_> = servers.iter().map(|(n, live)| (n.name.as_str(), *live)).collect();
    assert_eq!(names, [("n1", true), ("n2", true)]);
    // A clean stop keeps a server of a cluster registered: its lease runs out once its last
    // commits are in the store, and a restart within it keeps its tenants.
    n2.stop().await.unwrap();
    let servers = n1.tenancy.nodes().list().await.unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    n1.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_refuses_to_start_without_a_shared_master_key_or_with_an_https_address() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let configure = node("n1", &url, store.path());
    let refused = TestServer::start_with(move |s| {
        configure(s);
        s.fleet.backup.master_key = None;
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(refused.contains("share one master key"), "{refused}");
    // The servers call each other over plain HTTP: an https:// address is refused at start,
    // not at the first forward.
    let configure = node("n1", &url, store.path());
    let refused = TestServer::start_with(move |s| {
        configure(s);
        s.fleet.cluster.advertise = Some("https://10.0.0.5:8443".into());
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(refused.contains("plain HTTP on a private network"), "{refused}");
}

/// Target 2 of the cluster issue, and failover: n1 reaches PostgreSQL through a proxy the test
/// cuts while a client keeps writing to n1. n1 refuses once its lease can no longer be renewed,
/// before n2 may take acme over; n2 then restores acme from the store and serves it, with every
/// write acknowledged well before the cut; once n1 is back it has lost acme and forwards to n2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cut_off_stops_writing_before_another_takes_its_tenants_over_from_the_store() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(Proxy::upstream_of(&url)).await;
    let n1 = TestServer::start_with(node("n1", &proxy.url_for(&url), store.path())).await.unwrap();
    n1.sign_up("ada@example.com", "acme").await.unwrap();
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    let acme = tenant_id(&n1, "acme").await;
    let token = n1.personal_token("ada@example.com", "acme").await.unwrap();
    let (on1, on2) = (ApiClient::new(n1.addr, Some(&token)), ApiClient::new(n2.addr, Some(&token)));
    let (status, project) = on1.call("POST", "/w/acme/projects", Some(json!({ "name": "P" }))).await.unwrap();
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_i64().unwrap();

    // The client writes to n1 every 20 ms and remembers what was acknowledged, and when.
    let writer = tokio::spawn({
        let on1 = ApiClient::new(n1.addr, Some(&token));
        async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            let started = Instant::now();
            for i in 0.. {
                let body = json!({ "project_id": project_id, "title": format!("w{i}") });
                let (status, _) = on1.call("POST", "/w/acme/tasks", Some(body)).await.unwrap();
                match status {
                    201 => acknowledged.push((format!("w{i}"), Instant::now())),
                    503 => refused += 1,
                    other => panic!("write {i} answered {other}"),
                }
                if started.elapsed() > Duration::from_secs(9) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let cut = Instant::now();

    // n2 asks for acme until it answers for itself (forwarded to n1 while n1's lease is
    // current: n1 answers until its own deadline, then refuses; then n2 takes acme over).
    let taken = loop {
        let asked = Instant::now();
        let (status, body) = on2.call("GET", "/w/acme/tasks?limit=1", None).await.unwrap();
        if status == 200 && n2.tenancy.is_here(acme) {
            break asked;
        }
        if status == 200 {
            continue;
        }
        assert_eq!(status, 503, "{body}");
        assert!(cut.elapsed() < Duration::from_secs(30), "n2 did not take acme over: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (acknowledged, refused) = writer.await.unwrap();
    let last_on_n1 = acknowledged.last().map(|(_, at)| *at).unwrap();
    assert!(refused > 0, "n1 refused writes once its lease lapsed");
    assert!(
        last_on_n1 < taken,
        "n1 acknowledged a write {:?} after n2 began serving acme",
        last_on_n1.duration_since(taken)
    );
    assert!(n2.tenancy.is_here(acme), "n2 owns acme now");

    // Every write acknowledged more than the continuous interval (1 s) + 1 s before the
    // takeover is there; the file is intact.
    let db = n2.tenancy.db(acme).await.unwrap();
    let titles: Vec<String> = db
        .turn()
        .await
        .call(|conn| conn.prepare("SELECT title FROM tasks")?.query_map([], |r| r.get(0))?.collect())
        .unwrap();
    drop(db);
    let old_enough = acknowledged.iter().filter(|(_, at)| *at + Duration::from_secs(2) < taken);
    let missing: Vec<&str> =
        old_enough.map(|(t, _)| t.as_str()).filter(|t| !titles.iter().any(|x| x == t)).collect();
    assert!(missing.is_empty(), "acknowledged writes missing after the takeover: {missing:?}");
    let lost = acknowledged.iter().filter(|(t, _)| !titles.contains(t)).count();
    eprintln!(
        "cut → n1's last acknowledged write {:?}, → n2 serving {:?}; {} writes acknowledged, {lost} of them (the newest) not in the store at the takeover",
        last_on_n1.saturating_duration_since(cut),
        taken.saturating_duration_since(cut),
        acknowledged.len()
    );
    assert!(titles.len() >= 5, "{titles:?}");
    let (_, integrity) = silo_e2e::tasks_and_integrity(&n2.tenancy, "acme").await.unwrap();
    assert_eq!(integrity, "ok");

    // n2 writes acme now.
    let body = json!({ "project_id": project_id, "title": "on n2" });
    assert_eq!(on2.call("POST", "/w/acme/tasks", Some(body)).await.unwrap().0, 201);

    // n1 comes back: it learns it lost acme, drops its stale file and forwards to n2.
    proxy.heal();
    let healed = Instant::now();
    while n1.tenancy.is_here(acme) || file_of(&n1, acme).await.exists() {
        assert!(healed.elapsed() < Duration::from_secs(20), "n1 still holds acme after it came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, tasks) =
        on1.call("GET", &format!("/w/acme/tasks?project={project_id}&limit=500"), None).await.unwrap();
    assert_eq!(status, 200, "{tasks}");
    assert_eq!(tasks["items"][0]["title"], "on n2", "n1 forwards to acme's new owner");
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// A move to another server (sent to either: it runs on the tenant's): the tenant's writes
/// go with it, a client that retries on 503 loses none, and the old server keeps no copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_to_another_server_with_every_write() {
    use silo_backups::BackupsExt;
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let n1 = TestServer::start_with(node("n1", &url, store.path())).await.unwrap();
    n1.sign_up("ada@example.com", "acme").await.unwrap();
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    let acme = tenant_id(&n1, "acme").await;
    let token = n1.personal_token("ada@example.com", "acme").await.unwrap();
    let ops = ApiClient::new(n2.addr, Some(&n2.operator_token("ops@example.com").await.unwrap()));
    let on1 = ApiClient::new(n1.addr, Some(&token));
    let (_, project) = on1.call("POST", "/w/acme/projects", Some(json!({ "name": "P" }))).await.unwrap();
    let project_id = project["id"].as_i64().unwrap();

    // Writes through n1 all along, retrying on 503 as Retry-After says.
    let writer = tokio::spawn({
        let on1 = ApiClient::new(n1.addr, Some(&token));
        async move {
            let (mut written, mut retries) = (Vec::new(), 0);
            for i in 0..60 {
                let title = format!("m{i}");
                loop {
                    let body = json!({ "project_id": project_id, "title": title });
                    let (status, answer) = on1.call("POST", "/w/acme/tasks", Some(body)).await.unwrap();
                    match status {
                        201 => break,
                        503 => retries += 1,
                        other => panic!("write {title}: {other} {answer}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                written.push(title);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (written, retries)
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, moved) =
        ops.call("POST", "/tenants/acme/move", Some(json!({ "node": "n2" }))).await.unwrap();
    assert_eq!(status, 200, "{moved}");
    assert_eq!((moved["from"].as_str(), moved["to"].as_str()), (Some("n1"), Some("n2")), "{moved}");
    assert_eq!(moved["prepared"], true, "n2 restored acme before the switch: {moved}");
    let (written, retries) = writer.await.unwrap();
    eprintln!(
        "moved n1 → n2: unavailable on n1 {} ms; the client retried {retries} times",
        moved["unavailable_ms"]
    );

    assert!(n2.tenancy.is_here(acme) && !n1.tenancy.is_here(acme), "acme is n2's");
    assert!(!file_of(&n1, acme).await.exists(), "n1 keeps no copy");
    let db = n2.tenancy.db(acme).await.unwrap();
    let titles: Vec<String> = db
        .turn()
        .await
        .call(|conn| conn.prepare("SELECT title FROM tasks")?.query_map([], |r| r.get(0))?.collect())
        .unwrap();
    drop(db);
    let missing: Vec<&String> = written.iter().filter(|t| !titles.contains(t)).collect();
    assert!(missing.is_empty(), "acknowledged writes lost in the move: {missing:?}");
    assert_eq!(titles.len(), written.len(), "each write once");

    // Only a server of the cluster may ask another to prepare a tenant.
    let raw = reqwest::Client::new();
    for secret in [None, Some("not-the-secret")] {
        let mut ask = raw.post(n1.url(&format!("/cluster/v1/tenants/{acme}/prepare")));
        if let Some(secret) = secret {
            ask = ask.header("x-silo-forwarded", secret);
        }
        assert_eq!(ask.send().await.unwrap().status(), 404, "asked with {secret:?}");
    }

    // Refusals say what is wrong.
    let (status, body) = ops.call("POST", "/tenants/acme/move", Some(json!({ "node": "n2" }))).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already on node `n2`"), "{body}");
    let (status, body) = ops.call("POST", "/tenants/acme/move", Some(json!({ "node": "n9" }))).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no live server `n9`"), "{body}");
    let (status, body) = ops
        .call("POST", "/tenants/acme/move", Some(json!({ "node": "n1", "region": "local" })))
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    // Run on a server that is not the tenant's, a move says where the tenant is.
    let acme_ref = TenantRef::Id(acme);
    let elsewhere = n1.tenancy.backups().relocations().to_node(&acme_ref, "n1", "test").await.unwrap_err();
    assert_eq!(elsewhere.kind(), silo_core::ErrorKind::Elsewhere, "{elsewhere}");
    // A server does not prepare a tenant it holds.
    let tenant = n2.tenancy.control().tenant_by_id(acme).await.unwrap();
    let refused = n2.tenancy.backups().prepare(&tenant).await.unwrap_err();
    assert!(refused.to_string().contains("this server's already"), "{refused}");

    // Back and forth at once: the new owner moves a tenant on before its next heartbeat.
    for to in ["n1", "n2"] {
        let (status, body) =
            ops.call("POST", "/tenants/acme/move", Some(json!({ "node": to }))).await.unwrap();
        assert_eq!(status, 200, "to {to}: {body}");
    }
    let (status, tasks) = on1.call("GET", "/w/acme/tasks?limit=100", None).await.unwrap();
    assert_eq!((status, tasks["items"].as_array().map(Vec::len)), (200, Some(60)), "{tasks}");
    // No staging file of the prepares stays beside the tenant's file on either server.
    for server in [&n1, &n2] {
        let dir = file_of(server, acme).await.parent().unwrap().to_owned();
        let left = restore_staging(&dir);
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }

    // A move prepared on n1 that never switched leaves a copy there; a purge on n2 reaches it.
    let n1_dir = file_of(&n1, acme).await.parent().unwrap().to_owned();
    let asked = raw
        .post(n1.url(&format!("/cluster/v1/tenants/{acme}/prepare")))
        .header("x-silo-forwarded", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 204);
    assert!(!restore_staging(&n1_dir).is_empty(), "n1 holds a prepared copy of acme");
    let forget = raw.delete(n1.url(&format!("/cluster/v1/tenants/{acme}/prepared"))).send().await.unwrap();
    assert_eq!(forget.status(), 404, "only a server of the cluster may ask");
    let (status, body) = ops.call("DELETE", "/tenants/acme", None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = ops.call("DELETE", "/tenants/acme?purge=true", None).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("deleted")), "{body}");
    assert_eq!(restore_staging(&n1_dir), Vec::<String>::new(), "the purge left n1's prepared copy");
    let audit = n2.tenancy.control().audit_entries(acme, 20).await.unwrap();
    let certificate = &audit.iter().find(|e| e.action == "tenant.purge").unwrap().detail;
    assert_eq!(certificate["backups"]["prepared_copies_removed_on"], json!(["n1"]), "{certificate}");
    // A purged tenant is no server's to count (nor to place others by).
    let counted: i64 = n1.tenancy.nodes().list().await.unwrap().iter().map(|(n, _)| n.tenants).sum();
    assert_eq!(counted, 0, "the purged tenant is still counted");
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// `silo cluster rebalance` on the fullest server moves its tenants beyond the fair share to
/// the emptiest; every tenant still answers, on either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_spreads_the_tenants_and_every_one_still_answers() {
    use silo_backups::BackupsExt;
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let n1 = TestServer::start_with(node("n1", &url, store.path())).await.unwrap();
    let ops1 = ApiClient::new(n1.addr, Some(&n1.operator_token("ops@example.com").await.unwrap()));
    let slugs: Vec<String> = (0..6).map(|i| format!("team{i}")).collect();
    for slug in &slugs {
        let (status, body) = ops1.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    // n2 joins a cluster whose tenants are all on n1.
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    // What the control plane says each server owns.
    let counts = || async {
        let nodes = n1.tenancy.nodes().list().await.unwrap();
        nodes.iter().map(|(n, _)| n.tenants).collect::<Vec<_>>()
    };
    assert_eq!(counts().await, [6, 0]);
    let run = n1.tenancy.backups().relocations().rebalance("test").await.unwrap();
    assert_eq!((run.fair_share, run.moved.len(), run.failed.len()), (3, 3, 0), "{run:?}");
    assert_eq!(counts().await, [3, 3]);
    // The routes a load balancer reads say the same (`silo cluster routes`).
    let routes = n2.tenancy.routes().await.unwrap();
    let on = |node: &str| routes.iter().filter(|(_, n, _)| n == node).count();
    assert_eq!((routes.len(), on("n1"), on("n2")), (6, 3, 3), "{routes:?}");
    assert!(routes.iter().all(|(_, n, a)| *a
        == if n == "n1" { format!("http://{}", n1.addr) } else { format!("http://{}", n2.addr) }));
    let again = n1.tenancy.backups().relocations().rebalance("test").await.unwrap();
    assert!(again.moved.is_empty(), "balanced: nothing more to move");
    let ops2 = ApiClient::new(n2.addr, Some(&n1.operator_token("ops2@example.com").await.unwrap()));
    for slug in &slugs {
        for ops in [&ops1, &ops2] {
            let (status, body) = ops.call("GET", &format!("/tenants/{slug}/restorable"), None).await.unwrap();
            assert_eq!(status, 200, "{slug}: {body}");
        }
    }

    // A purge runs on the tenant's server, wherever it is asked for: n1 refuses to purge a
    // tenant of n2's by itself (the file is not here), and forwards the API's purge to n2.
    let (moved, _, _) = &run.moved[0];
    let id = tenant_id(&n1, moved).await;
    // n2 restores what was moved to it within a heartbeat, without being asked.
    let waited = Instant::now();
    while !n2.tenancy.is_here(id) {
        assert!(waited.elapsed() < Duration::from_secs(10), "n2 did not restore {moved}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ops1.call("DELETE", &format!("/tenants/{moved}"), None).await.unwrap().0, 200);
    let refused = n1.tenancy.tenants().purge(&TenantRef::Id(id), "test").await.unwrap_err();
    assert_eq!(refused.kind(), silo_core::ErrorKind::Elsewhere, "{refused}");
    let n2_file = file_of(&n2, id).await;
    assert!(n2_file.exists(), "n2 has it");
    let (status, body) = ops1.call("DELETE", &format!("/tenants/{id}?purge=true"), None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "deleted", "{body}");
    assert!(!n2_file.exists(), "purged on n2, where the file was");
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// A server that goes silent (cut off from PostgreSQL, no request asking for its tenants):
/// the others take every one of its tenants over by themselves once its lease ran out, shared
/// out by room, and say so on `/metrics` and the console's fleet view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_of_a_silent_server_are_taken_over_without_being_asked_for() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(Proxy::upstream_of(&url)).await;
    let n1 = TestServer::start_with(node("n1", &proxy.url_for(&url), store.path())).await.unwrap();
    let token = n1.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(n1.addr, Some(&token));
    let mut ids = Vec::new();
    for i in 0..6 {
        let (status, body) =
            ops.call("POST", "/tenants", Some(json!({ "slug": format!("team{i}") }))).await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.push(tenant_id(&n1, &format!("team{i}")).await);
    }
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    let n3 = TestServer::start_with(node("n3", &url, store.path())).await.unwrap();
    // No wait: a tenant provisioned in a cluster is in the store before its creation answers.
    proxy.cut();
    let cut = Instant::now();
    let taken = |server: &TestServer| ids.iter().filter(|id| server.tenancy.is_here(**id)).count();
    while taken(&n2) + taken(&n3) < ids.len() {
        assert!(cut.elapsed() < Duration::from_secs(30), "n2 and n3 did not take every tenant over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (on2, on3) = (taken(&n2), taken(&n3));
    eprintln!("cut → all 6 tenants taken over in {:?}: {on2} by n2, {on3} by n3", cut.elapsed());
    assert!(on2 > 0 && on3 > 0, "shared out: {on2} on n2, {on3} on n3");
    for (server, count) in [(&n2, on2), (&n3, on3)] {
        let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(metrics.contains(&format!("silo_cluster_takeovers_total {count}")), "{metrics}");
        assert!(metrics.contains("silo_cluster_last_takeover_rpo_seconds"), "{metrics}");
    }
    let admin = n2.sign_in("ops@example.com").await.unwrap();
    let fleet = admin.get("/admin/fleet").await.unwrap();
    assert!(fleet.body.contains(&format!("took over {on2} tenant")), "{}", fleet.body);
    let ops2 = ApiClient::new(n2.addr, Some(&token));
    for i in 0..6 {
        let (status, body) = ops2.call("GET", &format!("/tenants/team{i}/restorable"), None).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    proxy.heal();
    n3.stop().await.unwrap();
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// New tenants go to the server with the most room, whichever server provisions them: an
/// operator's through the API, and a sign-up's (whose pages then work through either server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_goes_to_the_server_with_the_most_room() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let n1 = TestServer::start_with(node("n1", &url, store.path())).await.unwrap();
    let ops = ApiClient::new(n1.addr, Some(&n1.operator_token("ops@example.com").await.unwrap()));
    for slug in ["old1", "old2"] {
        assert_eq!(ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap().0, 201);
    }
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();

    let (status, body) = ops.call("POST", "/tenants", Some(json!({ "slug": "fresh" }))).await.unwrap();
    assert_eq!(status, 201, "{body}");
    n1.sign_up("bob@example.com", "bobco").await.unwrap();
    let routes = n1.tenancy.routes().await.unwrap();
    let node_of = |slug: &str| routes.iter().find(|(s, _, _)| s == slug).map(|(_, n, _)| n.clone());
    assert_eq!(
        [node_of("old1"), node_of("fresh"), node_of("bobco")],
        [Some("n1".to_owned()), Some("n2".to_owned()), Some("n2".to_owned())],
        "{routes:?}"
    );
    for slug in ["fresh", "bobco"] {
        let id = tenant_id(&n1, slug).await;
        assert!(!file_of(&n1, id).await.exists(), "n1 keeps no copy of {slug}");
        let (status, body) = ops.call("GET", &format!("/tenants/{slug}/restorable"), None).await.unwrap();
        assert_eq!(status, 200, "{slug} answers through n1: {body}");
    }
    let bob = n1.sign_in("bob@example.com").await.unwrap();
    let page = bob.get("/w/bobco/").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let bobco = tenant_id(&n2, "bobco").await;
    assert!(n2.tenancy.is_here(bobco) && file_of(&n2, bobco).await.exists(), "bobco's file is on n2");
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// A plan changed on a server that does not hold the tenant (an operator's `silo tenant
/// set-plan` runs where it is typed) reaches the open file on the tenant's server: its next
/// request there gets the new plan's size limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_changed_on_another_server_limits_the_open_file() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let with_tiny = |name: &str| {
        let configure = node(name, &url, store.path());
        move |s: &mut Settings| {
            configure(s);
            s.plans.0.insert("tiny".into(), silo_billing::Plan { storage_mb: Some(1), ..Default::default() });
        }
    };
    let n1 = TestServer::start_with(with_tiny("n1")).await.unwrap();
    n1.sign_up("ada@example.com", "acme").await.unwrap();
    let n2 = TestServer::start_with(with_tiny("n2")).await.unwrap();
    let acme = tenant_id(&n1, "acme").await;
    let token = n1.personal_token("ada@example.com", "acme").await.unwrap();
    let through_n2 = ApiClient::new(n2.addr, Some(&token));
    let (status, project) =
        through_n2.call("POST", "/w/acme/projects", Some(json!({ "name": "P" }))).await.unwrap();
    assert_eq!(status, 201, "{project}");
    assert!(n1.tenancy.is_here(acme) && n1.tenancy.cache().open_handles() > 0, "acme is open on n1");

    n2.tenancy.tenants().set_plan(acme, "tiny", "test").await.unwrap();
    let body = "quota ".repeat(700);
    let mut written = 0;
    let refusal = loop {
        let task = json!({ "project_id": project["id"], "title": format!("t{written}"), "body": body });
        let (status, answer) = through_n2.call("POST", "/w/acme/tasks", Some(task)).await.unwrap();
        match status {
            201 => written += 1,
            _ => break (status, answer),
        }
        assert!(written < 2_000, "n1's open file kept the old plan's limit");
    };
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "storage_quota_exceeded", "{}", refusal.1);
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
}

/// A server renamed on its data directory (it ran as `vm`, the host's name by default, and
/// now has `[cluster] node = "n1"`) keeps its tenants and their files: they are not another
/// server's stale copies. Restarted under the new name while the old name's lease is current
/// (a copy of the data directory would look the same), it is refused and told when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_server_keeps_its_tenants_and_their_files() {
    let Some(url) = postgres_database().await else { return };
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let as_node = |name: &str| {
        let (configure, data) = (node(name, &url, store.path()), data.path().to_owned());
        move |s: &mut Settings| {
            configure(s);
            s.fleet.data_dir = data;
        }
    };
    let vm = TestServer::start_with(as_node("vm")).await.unwrap();
    vm.sign_up("ada@example.com", "acme").await.unwrap();
    let acme = tenant_id(&vm, "acme").await;
    let token = vm.personal_token("ada@example.com", "acme").await.unwrap();
    let on_vm = ApiClient::new(vm.addr, Some(&token));
    let (status, _) = on_vm.call("POST", "/w/acme/projects", Some(json!({ "name": "Kept" }))).await.unwrap();
    assert_eq!(status, 201);
    let file = file_of(&vm, acme).await;
    vm.stop().await.unwrap();

    let refused = TestServer::start_with(as_node("n1")).await.err().expect("refused").to_string();
    assert!(refused.contains("served as node `vm`") && refused.contains("lease"), "{refused}");
    let started = Instant::now();
    let n1 = loop {
        match TestServer::start_with(as_node("n1")).await {
            Ok(n1) => break n1,
            Err(e) if started.elapsed() < Duration::from_secs(15) => {
                assert!(e.to_string().contains("served as node `vm`"), "{e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("n1 never started: {e}"),
        }
    };
    assert!(file.exists(), "n1 removed its own tenant's file as another server's");
    assert!(n1.tenancy.is_here(acme), "acme is n1's at once");
    let on_n1 = ApiClient::new(n1.addr, Some(&token));
    let (status, projects) = on_n1.call("GET", "/w/acme/projects", None).await.unwrap();
    assert_eq!(status, 200, "{projects}");
    assert!(projects.to_string().contains("Kept"), "{projects}");
    let nodes: Vec<String> =
        n1.tenancy.nodes().list().await.unwrap().into_iter().map(|(n, _)| n.name).collect();
    assert_eq!(nodes, ["n1"], "the old name is gone");
    n1.stop().await.unwrap();
}

/// A tenant whose server stopped and whose objects the store lost cannot be taken over: a
/// request for it is told so with 503 and Retry-After (the store's state, not the client's
/// doing), never a 500, while the takeover is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_the_store_cannot_give_back_answers_503_not_500() {
    let Some(url) = postgres_database().await else { return };
    let store = tempfile::tempdir().unwrap();
    let n1 = TestServer::start_with(node("n1", &url, store.path())).await.unwrap();
    n1.sign_up("ada@example.com", "acme").await.unwrap();
    let token = n1.personal_token("ada@example.com", "acme").await.unwrap();
    let n2 = TestServer::start_with(node("n2", &url, store.path())).await.unwrap();
    n1.stop().await.unwrap();
    std::fs::remove_dir_all(store.path().join("tenants")).unwrap();

    let on2 = ApiClient::new(n2.addr, Some(&token));
    let started = Instant::now();
    let last = loop {
        let (status, body) = on2.call("GET", "/w/acme/projects", None).await.unwrap();
        assert_eq!(status, 503, "{body}");
        if body.to_string().contains("backup store") || started.elapsed() > Duration::from_secs(15) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(last.to_string().contains("brought back on this server from the backup store"), "{last}");
    n2.stop().await.unwrap();
}
