//! Billing end to end: the storage quota holds at the file. A tenant on a 1 MB plan is filled
//! through the API until the quota answers 507; every acknowledged write is there, the file is
//! intact, reads work; a larger plan lifts the limit on the open handle at once.

use serde_json::json;
use silo_accounts::Role;
use silo_billing::Plan;
use silo_e2e::{ApiClient, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_fills_its_plan_to_the_quota_and_an_upgrade_lifts_it_on_the_open_handle() {
    let server = TestServer::start_with(|s| {
        s.plans.0.insert("tiny".into(), Plan { storage_mb: Some(1), ..Plan::default() });
    })
    .await
    .unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let (status, body) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "gold" }))).await.unwrap();
    assert_eq!(status, 422, "an unknown plan: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no plan `gold`"), "{body}");
    let (status, tenant) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "tiny" }))).await.unwrap();
    assert_eq!((status, tenant["plan"].as_str()), (200, Some("tiny")), "{tenant}");

    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let ada = ApiClient::new(
        server.addr,
        Some(&server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap()),
    );
    let (_, project) = ada.call("POST", "/w/acme/projects", Some(json!({ "name": "P" }))).await.unwrap();
    let body = "quota ".repeat(700);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let task =
            json!({ "project_id": project["id"], "title": format!("t{}", acknowledged.len()), "body": body });
        let (status, answer) = ada.call("POST", "/w/acme/tasks", Some(task)).await.unwrap();
        match status {
            201 => acknowledged.push(answer["id"].as_i64().unwrap()),
            _ => break (status, answer),
        }
        assert!(acknowledged.len() < 2_000, "a 1 MB plan stopped nothing");
    };
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "storage_quota_exceeded", "{}", refusal.1);
    assert!(acknowledged.len() > 20, "the plan's megabyte was usable: {}", acknowledged.len());

    // Nothing acknowledged is lost, the file is intact, reads work.
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    let (count, integrity): (i64, String) = db
        .call(|conn| {
            let count = conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
            Ok((count, conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
        })
        .unwrap();
    assert_eq!((count, integrity.as_str()), (acknowledged.len() as i64, "ok"));
    let size = std::fs::metadata(server.tenancy.tenant_path(&tenant).unwrap()).unwrap().len();
    assert!(size <= 1_000_000, "the file stayed within the plan: {size} bytes");
    drop(db);
    let (status, first) = ada.call("GET", &format!("/w/acme/tasks/{}", acknowledged[0]), None).await.unwrap();
    assert_eq!(status, 200, "{first}");

    // A larger plan lifts the limit on the handle already open (no reopen).
    let opens = server.tenancy.cache().stats().opens;
    let (status, _) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "team" }))).await.unwrap();
    assert_eq!(status, 200);
    let task = json!({ "project_id": project["id"], "title": "after the upgrade", "body": body });
    let (status, answer) = ada.call("POST", "/w/acme/tasks", Some(task)).await.unwrap();
    assert_eq!(status, 201, "{answer}");
    assert_eq!(server.tenancy.cache().stats().opens, opens, "the same open handle");
    server.stop().await.unwrap();
}
