//! Durable jobs end to end: a tenant export requested over the API runs on the application's
//! worker pool and leaves a zip; jobs are read over the API; bad requests are named.

use std::time::Duration;

use serde_json::json;
use silo_accounts::Role;
use silo_e2e::{ApiClient, TestServer};

async fn wait_until_finished(ops: &ApiClient, id: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, job) = ops.call("GET", &format!("/jobs/{id}"), None).await.unwrap();
        assert_eq!(status, 200, "{job}");
        if matches!(job["status"].as_str(), Some("done" | "failed" | "cancelled")) {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_export_runs_as_a_job_and_leaves_its_zip() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let (status, tenant) = ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    assert_eq!(status, 201, "{tenant}");

    let (status, job) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["kind"].as_str(), job["payload"]["tenant"].as_str()),
        (Some("tenant.export"), tenant["id"].as_str())
    );
    let job = wait_until_finished(&ops, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        (job["attempts"].as_i64(), job["progress_done"].as_i64(), job["progress_total"].as_i64()),
        (Some(1), Some(1), Some(1))
    );
    let path = std::path::PathBuf::from(job["result"]["path"].as_str().unwrap());
    assert!(path.starts_with(&server.tenancy.settings().data_dir), "{}", path.display());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(job["result"]["bytes"].as_u64(), Some(bytes.len() as u64));
    assert!(bytes.starts_with(b"PK"), "a zip");
    assert_eq!(job["result"]["manifest"]["slug"], "acme");

    // The job's download link is the credential (no token); it cannot be altered, and once it
    // expires it answers 410 and the zip is gone.
    let link = job["result"]["download"].as_str().unwrap();
    let client = reqwest::Client::new();
    let download = client.get(server.url(link)).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/zip");
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let (expires, signature) = {
        let query = link.split_once('?').unwrap().1;
        let value =
            |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap().to_owned();
        (value("expires").parse::<u64>().unwrap(), value("signature"))
    };
    let id = job["id"].as_str().unwrap();
    let longer = format!("/api/v1/exports/{id}?expires={}&signature={signature}", expires + 86_400);
    assert_eq!(
        client.get(server.url(&longer)).send().await.unwrap().status(),
        404,
        "an extended expiry is refused"
    );
    let forged = format!("/api/v1/exports/{id}?expires={expires}&signature=00{}", &signature[2..]);
    assert_eq!(client.get(server.url(&forged)).send().await.unwrap().status(), 404);
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    let expired = server.tenancy.exports().download_link(id, past).await.unwrap();
    assert_eq!(client.get(server.url(&expired)).send().await.unwrap().status(), 410);
    assert!(!path.exists(), "an expired export is deleted");

    // Operators can read what erasure would do with every column.
    let (status, manifest) = ops.call("GET", "/privacy/manifest", None).await.unwrap();
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["tenant"]["tables"]["members"]["columns"]["email"]["action"], "delete");
    assert_eq!(manifest["control"]["tables"]["audit_log"]["columns"]["actor"]["action"], "anonymise");

    let (status, list) = ops.call("GET", "/jobs?status=done", None).await.unwrap();
    assert_eq!(status, 200, "{list}");
    assert!(list.as_array().unwrap().iter().any(|j| j["id"] == job["id"]), "{list}");

    // The console lists it; a done job can be neither cancelled nor retried (a named refusal).
    let console = server.sign_in("ops@example.com").await.unwrap();
    let page = console.get("/admin/jobs").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(job["id"].as_str().unwrap()) && page.body.contains("tenant.export"),
        "{}",
        page.body
    );
    let id = job["id"].as_str().unwrap();
    let refused = console.submit("/admin/jobs", &format!("/admin/jobs/{id}/retry"), &[]).await.unwrap();
    assert_eq!(refused.status, 303);
    let shown = console.get("/admin/jobs").await.unwrap().body;
    assert!(shown.contains("cannot retry"), "{shown}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn job_requests_with_bad_input_or_the_wrong_token_are_refused() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let code = |body: &serde_json::Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();

    let (status, body) = ops.call("POST", "/tenants/nobody/export", None).await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found".to_owned()));
    let (status, body) = ops.call("GET", "/jobs/0190aaaa-0000-7000-8000-000000000000", None).await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found".to_owned()));
    let (status, body) = ops.call("GET", "/jobs?status=sleeping", None).await.unwrap();
    assert_eq!((status, code(&body)), (422, "invalid".to_owned()));

    // A member's personal token is not an operator's.
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let personal = server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap();
    let ada = ApiClient::new(server.addr, Some(&personal));
    let (status, body) = ada.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden".to_owned()));
    let (status, _) = ApiClient::new(server.addr, None).call("GET", "/jobs", None).await.unwrap();
    assert_eq!(status, 401);
    let (status, body) = ada.call("GET", "/privacy/manifest", None).await.unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden".to_owned()));
    server.stop().await.unwrap();
}
