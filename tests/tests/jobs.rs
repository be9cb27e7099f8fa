//! Durable jobs end to end: a tenant export requested over the API runs on the application's
//! worker pool and leaves a zip; jobs are read over the API; bad requests are named.

use std::time::Duration;

use serde_json::json;
use silo_accounts::Role;
use silo_e2e::{ApiClient, TestServer};

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
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
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

/// Writes a task (and a comment on it) holding `canary` in `slug`, as `email`'s member.
async fn work_as(server: &TestServer, email: &str, slug: &str, role: Role, canary: &str) {
    let token = server.member_token(email, slug, role).await.unwrap();
    let member = ApiClient::new(server.addr, Some(&token));
    let (status, project) =
        member.call("POST", &format!("/w/{slug}/projects"), Some(json!({ "name": "P" }))).await.unwrap();
    assert_eq!(status, 201, "{project}");
    let task = json!({ "project_id": project["id"], "title": format!("task {canary}"), "body": canary });
    let (status, task) = member.call("POST", &format!("/w/{slug}/tasks"), Some(task)).await.unwrap();
    assert_eq!(status, 201, "{task}");
    let tenant = server.tenancy.tenant(&slug.parse().unwrap()).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    let user = server.accounts.users().by_email(email).await.unwrap();
    let author = silo_workspace::members::by_user(&db.turn().await, &user.id).unwrap().unwrap().id;
    silo_workspace::comments::create(
        &db.turn().await,
        task["id"].as_i64().unwrap(),
        Some(author),
        &format!("comment {canary}"),
    )
    .unwrap();
}

/// A data-subject export holds the person's records from the control plane and their rows in
/// every tenant they belong to — and nothing of anybody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_export_holds_the_persons_data_across_tenants_and_no_one_elses() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    for slug in ["acme", "beta"] {
        ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
    }
    for who in ["ada", "bob"] {
        server
            .accounts
            .users()
            .create(&format!("{who}@example.com"), silo_e2e::PASSWORD, None, "test")
            .await
            .unwrap();
    }
    work_as(&server, "ada@example.com", "acme", Role::Owner, "CANARY-ada-7731").await;
    work_as(&server, "ada@example.com", "beta", Role::Member, "CANARY-ada-7731").await;
    work_as(&server, "bob@example.com", "acme", Role::Member, "CANARY-bob-5519").await;

    let (status, job) =
        ops.call("POST", "/subjects/export", Some(json!({ "email": "Ada@Example.com" }))).await.unwrap();
    assert_eq!(status, 202, "{job}");
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["result"]["found"].as_bool()),
        (Some("done"), Some(true)),
        "{job}"
    );
    assert_eq!(job["result"]["tenants"], 2);
    let zip = reqwest::get(server.url(job["result"]["download"].as_str().unwrap())).await.unwrap();
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("subject.json").unwrap(), &mut text).unwrap();
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["account"]["email"], "ada@example.com");
    for slug in ["acme", "beta"] {
        let tenant = &data["tenants"][slug];
        assert_eq!(tenant["members"][0]["email"], "ada@example.com", "{tenant}");
        assert!(tenant["tasks"][0]["body"] == "CANARY-ada-7731", "{tenant}");
        assert!(tenant["comments"][0]["body"].as_str().unwrap().contains("CANARY-ada-7731"), "{tenant}");
    }
    // Every column the manifest lists for a table that has rows of hers is in the export.
    let manifest = silo_workspace::personal_data();
    for slug in ["acme", "beta"] {
        for (table, rules) in manifest.tables.iter().filter(|(_, r)| r.person.is_some()) {
            for row in data["tenants"][slug][table].as_array().into_iter().flatten() {
                for column in rules.columns.keys() {
                    assert!(row.get(column).is_some(), "{slug}.{table}.{column} missing from {row}");
                }
            }
        }
        assert!(data["tenants"][slug]["projects"].as_array().is_some_and(|p| !p.is_empty()));
    }
    assert!(!text.contains("CANARY-bob") && !text.contains("bob@example.com"), "nobody else's data: {text}");
    assert!(!text.contains("password_hash") && !text.contains("csrf"), "no secrets");

    // An unknown address: accepted all the same, and the job reports no data.
    let (status, job) =
        ops.call("POST", "/subjects/export", Some(json!({ "email": "nobody@example.com" }))).await.unwrap();
    assert_eq!(status, 202);
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["result"]["found"].as_bool()),
        (Some("done"), Some(false)),
        "{job}"
    );
    // A body without the field is refused naming it; a member's token is not an operator's.
    let (status, body) = ops.call("POST", "/subjects/export", Some(json!({ "mail": "x" }))).await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("mail")), "{body}");
    let personal = server.member_token("bob@example.com", "beta", Role::Member).await.unwrap();
    let (status, _) = ApiClient::new(server.addr, Some(&personal))
        .call("POST", "/subjects/export", Some(json!({ "email": "ada@example.com" })))
        .await
        .unwrap();
    assert_eq!(status, 403);
    server.stop().await.unwrap();
}

/// Exports are bounded: one per workspace at a time (a repeat gets the one in progress), a
/// daily number and a daily byte budget per workspace, and none when the disk is nearly full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_one_at_a_time_bounded_per_day_and_refused_on_a_nearly_full_disk() {
    let server = TestServer::start_with(|s| s.fleet.exports.per_day = 2).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    // Ten clicks at once: one export in progress, returned to every click that came while it
    // ran. (A click that came after it finished may start the next: the export lane runs
    // beside the clicks, and on PostgreSQL nothing makes it wait for them.)
    let clicks = (0..10).map(|_| ops.call("POST", "/tenants/acme/export", None));
    let answers: Vec<_> = futures::future::join_all(clicks).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|(status, _)| *status == 202), "{answers:?}");
    let ids: std::collections::BTreeSet<&str> =
        answers.iter().map(|(_, job)| job["id"].as_str().unwrap()).collect();
    assert!(ids.len() <= 2, "the day's two exports at most: {ids:?}");
    let mut started = Vec::new();
    for id in &ids {
        ops.wait_for_job(id).await.unwrap();
        started.push(server.tenancy.jobs().get(id).await.unwrap());
    }
    started.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    for pair in started.windows(2) {
        assert!(pair[0].finished_at.as_ref() <= Some(&pair[1].created_at), "never two at once: {pair:?}");
    }
    // Then the day's second export, if the clicks did not start it.
    if ids.len() == 1 {
        let (_, second) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
        ops.wait_for_job(second["id"].as_str().unwrap()).await.unwrap();
    }
    let (status, refused) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (429, Some("throttled")), "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("No more exports today") && message.contains("the next can start after"),
        "{message}"
    );
    // The owner sees the same on the settings page.
    server.stop().await.unwrap();

    let server = TestServer::start_with(|s| s.fleet.exports.bytes_per_day = 1).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let (status, first) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!(status, 202, "one export is always allowed");
    ops.wait_for_job(first["id"].as_str().unwrap()).await.unwrap();
    let (status, refused) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!(status, 429, "the day's bytes are used: {refused}");
    server.stop().await.unwrap();

    let server =
        TestServer::start_with(|s| s.fleet.exports.min_free_mb = u64::MAX / 2_000_000).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let (status, refused) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("disk_low")), "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("not enough free disk space"),
        "{refused}"
    );
    let (status, _) =
        ops.call("POST", "/subjects/export", Some(json!({ "email": "ops@example.com" }))).await.unwrap();
    assert_eq!(status, 503, "a person's export too");
    let (_, jobs) = ops.call("GET", "/jobs?limit=100", None).await.unwrap();
    assert!(jobs.as_array().unwrap().iter().all(|j| j["kind"] != "tenant.export"), "nothing was queued");
    server.stop().await.unwrap();
}

/// Exports run in a lane of their own: an erasure asked for after ten queued exports does not
/// wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_does_not_wait_behind_queued_exports() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    server.accounts.users().create("dave@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let mut exports = Vec::new();
    for i in 0..10 {
        let slug = format!("t-{i}");
        ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
        server.member_token("dave@example.com", &slug, Role::Member).await.unwrap();
    }
    for i in 0..10 {
        let (_, job) = ops.call("POST", &format!("/tenants/t-{i}/export"), None).await.unwrap();
        exports.push(job["id"].as_str().unwrap().to_owned());
    }
    let (_, erasure) =
        ops.call("POST", "/subjects/erase", Some(json!({ "email": "dave@example.com" }))).await.unwrap();
    let erasure = ops.wait_for_job(erasure["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(erasure["status"], "done", "{erasure}");
    let mut finished_before = 0;
    for id in &exports {
        let job = ops.wait_for_job(id).await.unwrap();
        // An export discarded because the erasure reached its workspace is made again.
        if job["finished_at"].as_str() < erasure["finished_at"].as_str() && job["status"] == "done" {
            finished_before += 1;
        }
    }
    assert!(finished_before < 5, "the erasure waited for {finished_before} exports");
    server.stop().await.unwrap();
}

/// A download streams the zip from disk, and downloads of one link at once are bounded: the
/// one too many answers 429 with `Retry-After`, and a place frees when a download ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_streamed_and_bounded_per_link() {
    let server = TestServer::start_with(|s| s.fleet.exports.downloads_per_link = 2).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    // Enough incompressible text that a download outlasts the sockets' buffers.
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    let project = silo_workspace::projects::create(&db.turn().await, "big", "", None).unwrap();
    let mut seed = 0x9e3779b97f4a7c15_u64;
    for i in 0..400 {
        let body: String = (0..2_500)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("{:08x}", seed as u32)
            })
            .collect();
        let task = silo_workspace::tasks::NewTask {
            project_id: project,
            title: format!("t{i}"),
            body: body[..20_000].to_owned(),
            ..Default::default()
        };
        silo_workspace::tasks::create(&db.turn().await, &task, None).unwrap();
    }
    drop(db);
    let (_, job) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    let size = job["result"]["bytes"].as_u64().unwrap();
    assert!(size > 8_000_000, "{size}");
    let link = server.url(job["result"]["download"].as_str().unwrap());
    let client = reqwest::Client::new();
    // Two downloads started and not read: both hold their place.
    let first = client.get(&link).send().await.unwrap();
    let second = client.get(&link).send().await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    assert_eq!(first.headers()["content-length"], size.to_string().as_str());
    let third = client.get(&link).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The first finishes; its place is free again.
    assert_eq!(first.bytes().await.unwrap().len() as u64, size);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fourth = loop {
        let response = client.get(&link).send().await.unwrap();
        if response.status() == 200 || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(fourth.status(), 200);
    assert_eq!(fourth.bytes().await.unwrap().len() as u64, size);
    drop(second);
    server.stop().await.unwrap();
}
