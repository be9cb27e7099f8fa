//! Data-subject erasure end to end, with canaries: a unique string in one person's name,
//! address, tasks and comments across three tenants is, after the erasure job, found in no
//! byte of the data directory (tenant files and their `-wal`/`-shm`, `control.db` and its
//! `-wal`, exports), while everyone else's data is intact; a restore of a backup taken before
//! the erasure does not bring it back (the ledger is replayed); a repeat is idempotent; bad
//! requests are named.

use silo_backups::BackupsExt;
use std::time::Duration;

use serde_json::json;
use silo_accounts::Role;
use silo_backups::BackupKind;
use silo_core::TenantRef;
use silo_e2e::{ApiClient, TestServer, files_containing};

/// Lower case on purpose: the full-text index stores tokens folded, so a mixed-case canary
/// could hide a leftover index entry from the byte search.
const CANARY: &str = "zqxcanary7731";
const OTHER: &str = "bobkeeps5519";
const TENANTS: [&str; 3] = ["acme", "beta", "gamma"];

/// A project with a task holding `canary`, and a comment holding it, in `slug`, as `email`.
async fn work_as(server: &TestServer, email: &str, slug: &str, role: Role, canary: &str) -> i64 {
    // Boxed: the future of a member's token is deep enough to pass the compiler's layout limit
    // inside this one.
    let token = Box::pin(server.member_token(email, slug, role)).await.unwrap();
    let member = ApiClient::new(server.addr, Some(&token));
    let (status, project) = member
        .call("POST", &format!("/w/{slug}/projects"), Some(json!({ "name": format!("plans {canary}") })))
        .await
        .unwrap();
    assert_eq!(status, 201, "{project}");
    let task = json!({ "project_id": project["id"], "title": format!("task {canary}"), "body": format!("notes {canary}") });
    let (status, task) = member.call("POST", &format!("/w/{slug}/tasks"), Some(task)).await.unwrap();
    assert_eq!(status, 201, "{task}");
    let task_id = task["id"].as_i64().unwrap();
    comment_as(server, email, slug, task_id, &format!("comment {canary}")).await;
    task_id
}

/// A comment by `email`'s member on a task (the workspace has no comment API; the pages and
/// this test write through the repository).
async fn comment_as(server: &TestServer, email: &str, slug: &str, task_id: i64, body: &str) {
    let tenant = server.tenancy.tenant(&slug.parse().unwrap()).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    let user = server.accounts.users().by_email(email).await.unwrap();
    let author = silo_workspace::members::by_user(&db.turn().await, &user.id).unwrap().unwrap().id;
    silo_workspace::comments::create(&db.turn().await, task_id, Some(author), body).unwrap();
}

/// Writes the newest copy of the control plane in the server's backup store to `dest`.
async fn newest_control_copy(server: &TestServer, dest: &std::path::Path) {
    let backups = server.tenancy.backups();
    let store = backups.store().await.unwrap().store();
    let master = server.tenancy.master_key().await.unwrap();
    silo_backups::control_copies::fetch_newest(store, master, dest).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_is_in_no_byte_of_the_data_directory_and_stays_erased_after_a_restore() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    for slug in TENANTS {
        let (status, tenant) = ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
        assert_eq!(status, 201, "{tenant}");
    }
    let ada = format!("{CANARY}@example.com");
    let users = server.accounts.users();
    users.create(&ada, silo_e2e::PASSWORD, Some(&format!("Ada {CANARY}")), "test").await.unwrap();
    users.create("bob@example.com", silo_e2e::PASSWORD, Some("Bob"), "test").await.unwrap();
    let mut ada_tasks = Vec::new();
    for slug in TENANTS {
        ada_tasks.push(work_as(&server, &ada, slug, Role::Member, CANARY).await);
    }
    work_as(&server, "bob@example.com", "acme", Role::Owner, OTHER).await;
    // Bob comments on Ada's task: his words stay, on a task that no longer names her.
    let bob = ApiClient::new(
        server.addr,
        Some(&server.member_token("bob@example.com", "acme", Role::Owner).await.unwrap()),
    );
    comment_as(&server, "bob@example.com", "acme", ada_tasks[0], &format!("reply {OTHER}")).await;
    // A backup of acme from before the erasure, and an export of Ada's data.
    let acme: TenantRef = "acme".parse().unwrap();
    let before = server.tenancy.backups().create(&acme, BackupKind::Manual, "test").await.unwrap();
    let (status, export) = ops.call("POST", "/subjects/export", Some(json!({ "email": ada }))).await.unwrap();
    assert_eq!(status, 202);
    let export = ops.wait_for_job(export["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(export["status"], "done", "{export}");
    assert!(!files_containing(&data, CANARY.as_bytes()).is_empty(), "the canary is planted");
    let control = server.tenancy.control().reader();
    let stored = silo_core::db::testing::stored_bytes(control, &data).await;
    assert!(
        stored.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "the control plane holds the canary"
    );
    // A copy of the control plane in the backup store (continuous backup's) holds her account
    // (on PostgreSQL there are no copies: the control plane is not a file of ours).
    let embedded = server.tenancy.control().is_embedded();
    if embedded {
        assert!(server.tenancy.backups().copy_control_now().await.unwrap().is_some());
        let copy = tempfile::tempdir().unwrap();
        newest_control_copy(&server, &copy.path().join("before.db")).await;
        assert!(!files_containing(copy.path(), CANARY.as_bytes()).is_empty(), "the copy holds the canary");
    }

    // The dry run counts, per tenant, and changes nothing.
    let (status, plan) = ops
        .call("POST", "/subjects/erase?dry_run=true", Some(json!({ "email": ada.to_uppercase() })))
        .await
        .unwrap();
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["found"], true, "{plan}");
    for slug in TENANTS {
        let counts = &plan["tenants"][slug];
        assert_eq!(counts["members"]["deleted"], 1, "{slug}: {plan}");
        assert_eq!(counts["comments"]["deleted"], 1, "{slug}: {plan}");
        assert_eq!(counts["tasks"]["anonymised"], 1, "{slug}: {plan}");
        assert_eq!(counts["projects"]["anonymised"], 1, "{slug}: {plan}");
    }
    assert_eq!(plan["control_plane"]["users"], 1, "{plan}");
    assert_eq!(plan["control_plane"]["memberships"], 3, "{plan}");
    assert_eq!(plan["exports"], 1, "{plan}");
    assert!(server.accounts.users().by_email(&ada).await.is_ok(), "a dry run changes nothing");

    // The erasure.
    let (status, job) = ops.call("POST", "/subjects/erase", Some(json!({ "email": ada }))).await.unwrap();
    assert_eq!(status, 202, "{job}");
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(job["status"], "done", "{job}");
    let result = &job["result"];
    assert_eq!(result["found"], true, "{result}");
    assert_eq!(result["tenants"].as_object().unwrap().len(), 3, "{result}");
    assert_eq!(result["exports_deleted"], 1, "{result}");
    assert_eq!(
        job["payload"],
        json!({ "subject": result["subject"] }),
        "the job's own input no longer names her"
    );
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the canary survives in {leftovers:?}");
    let stored = silo_core::db::testing::stored_bytes(control, &data).await;
    assert!(
        !stored.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "the control plane holds the canary"
    );
    // The store's copies of the control plane: one without her replaced the older ones.
    if embedded {
        assert!(result["control_copies_replaced"].as_u64() >= Some(1), "{result}");
        let backups = server.tenancy.backups();
        let store = backups.store().await.unwrap().store();
        assert_eq!(store.list(silo_backups::control_copies::PREFIX).await.unwrap().len(), 1);
        let after = tempfile::tempdir().unwrap();
        newest_control_copy(&server, &after.path().join("control.db")).await;
        let leftovers = files_containing(after.path(), CANARY.as_bytes());
        assert!(leftovers.is_empty(), "the control plane's copy in the store holds the canary");
    }
    // Everyone else's data is intact: Bob's task, his reply on her (anonymised) task.
    let (status, hits) = bob.call("GET", &format!("/w/acme/search?q={OTHER}"), None).await.unwrap();
    assert_eq!(status, 200, "{hits}");
    assert!(hits.to_string().contains(OTHER), "{hits}");
    let (status, task) = bob.call("GET", &format!("/w/acme/tasks/{}", ada_tasks[0]), None).await.unwrap();
    assert_eq!((status, task["title"].as_str()), (200, Some("[erased]")), "{task}");
    let acme_db =
        server.tenancy.db(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().id).await.unwrap();
    let comments = silo_workspace::comments::list(&acme_db.turn().await, ada_tasks[0], None, 10).unwrap();
    assert_eq!(comments.len(), 1, "her comment went, his stayed: {comments:?}");
    assert_eq!(comments[0].author.as_deref(), Some("Bob"));
    drop(acme_db);
    assert!(!files_containing(&data, OTHER.as_bytes()).is_empty());
    // The audit trail names the erasure by the keyed hash, never by address.
    let audit = server.tenancy.audit_log(None, None, 500).await.unwrap();
    let erased = audit.iter().find(|e| e.action == "subject.erase").expect("an audit entry");
    assert_eq!(erased.detail["subject"], result["subject"]);

    // A repeat is idempotent: nothing left, and it says so.
    let (_, again) = ops.call("POST", "/subjects/erase", Some(json!({ "email": ada }))).await.unwrap();
    let again = ops.wait_for_job(again["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (again["status"].as_str(), again["result"]["already_erased"].as_bool()),
        (Some("done"), Some(true)),
        "{again}"
    );

    // Restoring the backup from before the erasure does not bring her back.
    let restored = server.tenancy.backups().restore(&acme, Some(&before.id), None, "test").await.unwrap();
    assert_eq!(restored.forgotten, 1);
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the restore brought the canary back: {leftovers:?}");
    let (status, hits) = bob.call("GET", &format!("/w/acme/search?q={OTHER}"), None).await.unwrap();
    assert!(
        status == 200 && hits.to_string().contains(OTHER),
        "Bob's data came back with the backup: {hits}"
    );
    // As a clone too.
    let clone =
        server.tenancy.backups().restore(&acme, Some(&before.id), Some("acme-copy"), "test").await.unwrap();
    assert_eq!(clone.forgotten, 1);
    assert!(files_containing(&data, CANARY.as_bytes()).is_empty());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_requests_with_bad_input_or_the_wrong_token_are_refused() {
    // It is 5 January on the server's clock; the test moves it a month on (no row is
    // back-dated).
    let at = |text: &str| silo_core::Timestamp::parse(text).unwrap();
    let clock = silo_core::TestClock::at(&at("2026-01-05T10:00:00.000Z"));
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| s.fleet.clock = shared).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    // An unknown address: accepted, and the job reports no data.
    let (status, job) =
        ops.call("POST", "/subjects/erase", Some(json!({ "email": "nobody@example.com" }))).await.unwrap();
    assert_eq!(status, 202, "{job}");
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["result"]["found"].as_bool()),
        (Some("done"), Some(false)),
        "{job}"
    );
    let (status, plan) = ops
        .call("POST", "/subjects/erase?dry_run=true", Some(json!({ "email": "nobody@example.com" })))
        .await
        .unwrap();
    assert_eq!((status, plan["found"].as_bool()), (200, Some(false)), "{plan}");
    // A body without the field, and a member's token.
    let (status, _) = ops.call("POST", "/subjects/erase", Some(json!({ "mail": "x" }))).await.unwrap();
    assert_eq!(status, 422);
    let member = server.member_token("bob@example.com", "acme", Role::Owner).await;
    let member = match member {
        Ok(token) => token,
        Err(_) => {
            server
                .accounts
                .users()
                .create("bob@example.com", silo_e2e::PASSWORD, None, "test")
                .await
                .unwrap();
            server.member_token("bob@example.com", "acme", Role::Owner).await.unwrap()
        }
    };
    let (status, _) = ApiClient::new(server.addr, Some(&member))
        .call("POST", "/subjects/erase", Some(json!({ "email": "ops@example.com" })))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(server.accounts.users().by_email("ops@example.com").await.is_ok());

    // The console lists open requests with their deadlines; one past it is marked overdue.
    let console = server.sign_in("ops@example.com").await.unwrap();
    let page = console.get("/admin/requests").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No open requests."), "{}", page.body);
    let all = console.get("/admin/requests?show=all").await.unwrap().body;
    assert!(all.contains("subject.erase") && all.contains("Deadline"), "{all}");
    // A request nobody could finish within the month is overdue: bob's erasure, asked on
    // 5 January, cannot reach acme's file (an operator's lease holds it), so it stays open and
    // retries; on 6 February the console flags it (its deadline was 4 February).
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let lease = server.tenancy.cache().lease(acme.id).await.unwrap();
    let (status, erase) =
        ops.call("POST", "/subjects/erase", Some(json!({ "email": "bob@example.com" }))).await.unwrap();
    assert_eq!(status, 202, "{erase}");
    let open = console.get("/admin/requests").await.unwrap().body;
    assert!(open.contains("subject.erase") && !open.contains("overdue"), "within its month: {open}");
    clock.set(&at("2026-02-06T10:00:00.000Z"));
    // A month on, the operator signs in again (the session of 5 January has idled out).
    let console = server.sign_in("ops@example.com").await.unwrap();
    let open = console.get("/admin/requests").await.unwrap().body;
    assert!(open.contains("overdue") && open.contains("2026-02-04"), "{open}");
    let requests = server.accounts.subjects().requests(true, 10).await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].overdue && requests[0].id == erase["id"].as_str().unwrap(), "{requests:?}");
    // Withdrawn before the lease goes, so no retry is still erasing while the server stops.
    server.tenancy.jobs().cancel(&requests[0].id, "test").await.unwrap();
    drop(lease);
    // A workspace's export is named by the workspace's slug.
    let acme_id = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().id;
    let export = server.tenancy.exports().start(acme_id, "ops@example.com").await.unwrap();
    let all = console.get("/admin/requests?show=all").await.unwrap().body;
    assert!(all.contains(&format!("workspace <a href=\"/admin/tenants/{acme_id}\">acme</a>")), "{all}");
    let _ = server.tenancy.jobs().cancel(&export.job().id, "test").await;
    server.stop().await.unwrap();
}

/// Waits until the newest request of `kind` is done; returns its job id.
async fn newest_request_done(server: &TestServer, kind: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let requests = server.accounts.subjects().requests(false, 20).await.unwrap();
        if let Some(request) = requests.iter().find(|r| r.kind == kind)
            && request.status == "done"
        {
            return request.id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no {kind} request finished: {requests:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Self-service on `/account`: "Download my data" leaves a working link on the page; "Delete
/// my account" asks for the password, refuses while the person is the last owner of a
/// workspace with other members, then purges the workspaces only they belong to, signs them
/// out and erases them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_downloads_their_data_and_deletes_their_account_from_the_account_page() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "solo").await.unwrap();
    server.sign_up("bob@example.com", "bobco").await.unwrap();
    server.tenancy.tenants().create(silo_tenancy::CreateTenant::with_slug("team"), "test").await.unwrap();
    let team: TenantRef = "team".parse().unwrap();
    let memberships = server.accounts.memberships();
    memberships.add(&team, "ada@example.com", Role::Owner, "test").await.unwrap();
    memberships.add(&team, "bob@example.com", Role::Member, "test").await.unwrap();

    let asked = ada.submit("/account", "/account/export", &[]).await.unwrap();
    assert_eq!(asked.status, 303);
    let job = newest_request_done(&server, "subject.export").await;
    // The page's HTML escapes the link as any attribute (a browser decodes it).
    let page = ada.get("/account").await.unwrap().body.replace("&#x2F;", "/").replace("&amp;", "&");
    let link = page
        .split("href=\"")
        .find(|s| s.starts_with(&format!("/api/v1/exports/{job}")))
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("a download link on the page: {page}"));
    let zip = reqwest::get(server.url(link)).await.unwrap();
    assert_eq!(zip.status(), 200);
    assert!(!zip.bytes().await.unwrap().is_empty());

    // The password is asked again; the last owner of a shared workspace must hand it over.
    let wrong = ada.submit("/account", "/account/delete", &[("password", "not my password")]).await.unwrap();
    assert_eq!((wrong.status, wrong.location.as_deref()), (303, Some("/account")));
    assert!(ada.get("/account").await.unwrap().body.contains("That password is not right."));
    let refused =
        ada.submit("/account", "/account/delete", &[("password", silo_e2e::PASSWORD)]).await.unwrap();
    assert_eq!(refused.status, 303);
    let page = ada.get("/account").await.unwrap().body;
    assert!(page.contains("You are the last owner of team"), "{page}");
    assert!(server.accounts.users().by_email("ada@example.com").await.is_ok());

    // An operator restores a backup of team as a new tenant: it is held (suspended, shown to
    // none of the members it copied) and blocks nobody's account deletion meanwhile.
    let backup = server.tenancy.backups().create(&team, BackupKind::Manual, "test").await.unwrap();
    let copy =
        server.tenancy.backups().restore(&team, Some(&backup.id), Some("team-copy"), "test").await.unwrap();
    assert!(
        copy.tenant.held && copy.tenant.status == silo_tenancy::TenantStatus::Suspended,
        "{:?}",
        copy.tenant
    );
    let bob_browser = server.sign_in("bob@example.com").await.unwrap();
    assert_eq!(bob_browser.get("/w/team-copy/").await.unwrap().status, 404, "not to its members");
    assert!(!bob_browser.get("/").await.unwrap().body.contains("team-copy"), "not in their list");
    let copy_file = server.tenancy.tenant_path(&copy.tenant).unwrap();
    assert!(
        !files_containing(copy_file.parent().unwrap(), b"ada@example.com").is_empty(),
        "her rows are in it"
    );

    let team_tenant = server.tenancy.tenant(&team).await.unwrap();
    let solo_id = server.tenancy.tenant(&"solo".parse().unwrap()).await.unwrap().id;
    let bob = server.accounts.users().by_email("bob@example.com").await.unwrap();
    let operator = silo_accounts::roles::By::Operator("test");
    memberships.change_role(&team_tenant, &bob.id, Role::Owner, operator).await.unwrap();
    let deleted =
        ada.submit("/account", "/account/delete", &[("password", silo_e2e::PASSWORD)]).await.unwrap();
    assert_eq!((deleted.status, deleted.location.as_deref()), (303, Some("/login")));
    assert_eq!(ada.get("/account").await.unwrap().status, 303, "signed out");
    newest_request_done(&server, "subject.erase").await;
    assert!(server.accounts.users().by_email("ada@example.com").await.is_err(), "the account is gone");
    let solo = server.tenancy.tenant(&TenantRef::Id(solo_id)).await.unwrap();
    assert_eq!(solo.status, silo_tenancy::TenantStatus::Deleted, "her own workspace is purged");
    assert!(server.tenancy.tenant(&"solo".parse().unwrap()).await.is_err(), "its slug went with it");
    let db = server.tenancy.db(team_tenant.id).await.unwrap();
    assert_eq!(silo_workspace::members::count(&db.turn().await).unwrap(), 1, "only Bob is left in the team");
    drop(db);
    // The held copy was not deleted with her account, and her erasure reached it.
    let copy_now = server.tenancy.tenant(&TenantRef::Id(copy.tenant.id)).await.unwrap();
    assert!(copy_now.held && copy_now.status == silo_tenancy::TenantStatus::Suspended);
    assert!(
        files_containing(copy_file.parent().unwrap(), b"ada@example.com").is_empty(),
        "erased in the copy too"
    );
    // Released by an operator, it is its members' again.
    let released = server.tenancy.tenants().resume(&TenantRef::Id(copy.tenant.id), "ops").await.unwrap();
    assert!(!released.held && released.status == silo_tenancy::TenantStatus::Active);
    assert_eq!(bob_browser.get("/w/team-copy/").await.unwrap().status, 200);
    let audit = server.tenancy.control().audit_entries(copy.tenant.id, 10).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "tenant.release"), "{audit:?}");
    server.stop().await.unwrap();
}

/// A tenant that cannot be opened when the erasure reaches it (here: leased by a restore-like
/// operation that holds it) is left pending; the job reports it, retries with backoff and
/// finishes once the tenant is free, without redoing the tenants already erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_tenant_is_retried_until_the_erasure_is_done() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let users = server.accounts.users();
    users.create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    for slug in ["acme", "beta"] {
        ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
        work_as(&server, "ada@example.com", slug, Role::Member, CANARY).await;
    }
    let beta = server.tenancy.tenant(&"beta".parse().unwrap()).await.unwrap();
    let lease = server.tenancy.cache().lease(beta.id).await.unwrap();
    let (_, job) =
        ops.call("POST", "/subjects/erase", Some(json!({ "email": "ada@example.com" }))).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let (_, job) = ops.call("GET", &format!("/jobs/{id}"), None).await.unwrap();
        if job["last_error"].as_str().is_some_and(|e| e.contains("beta")) {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "the busy tenant is reported: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(waiting["status"], "queued", "retried, not failed: {waiting}");
    let erasure = server
        .tenancy
        .erasures()
        .get(
            &server
                .tenancy
                .erasures()
                .subject_of(&server.accounts.users().by_email("ada@example.com").await.unwrap().id)
                .await
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(erasure.tenants[beta.id.to_string()], "pending", "{erasure:?}");
    assert!(erasure.tenants[acme.id.to_string()]["erased"].is_object(), "{erasure:?}");
    drop(lease);
    let done = ops.wait_for_job(&id).await.unwrap();
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("done"), Some(2)), "{done}");
    assert!(server.accounts.users().by_email("ada@example.com").await.is_err());
    server.stop().await.unwrap();
}

/// Dave wrote a task and a comment, left the workspace, then asked to be erased: the erasure
/// still reaches the workspace (and its earlier export), and a restore of a backup from
/// before does not bring him back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_left_is_erased_from_every_workspace_they_ever_wrote_in() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let dave = format!("dave.{CANARY}@example.com");
    let users = server.accounts.users();
    users.create(&dave, silo_e2e::PASSWORD, Some(&format!("Dave {CANARY}")), "test").await.unwrap();
    users.create("bob@example.com", silo_e2e::PASSWORD, Some("Bob"), "test").await.unwrap();
    work_as(&server, "bob@example.com", "acme", Role::Owner, OTHER).await;
    work_as(&server, &dave, "acme", Role::Member, CANARY).await;
    let acme: TenantRef = "acme".parse().unwrap();
    let before = server.tenancy.backups().create(&acme, BackupKind::Manual, "test").await.unwrap();
    let (status, export) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    assert_eq!(status, 202, "{export}");
    let export = ops.wait_for_job(export["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(export["status"], "done", "{export}");
    // Dave leaves.
    let tenant = server.tenancy.tenant(&acme).await.unwrap();
    let user = users.by_email(&dave).await.unwrap();
    let by = silo_accounts::By::Member { user_id: &user.id, label: &dave };
    server.accounts.memberships().remove(&tenant, &user.id, by).await.unwrap();
    assert!(!files_containing(&data, CANARY.as_bytes()).is_empty(), "his words stay in the workspace");

    let (status, job) = ops.call("POST", "/subjects/erase", Some(json!({ "email": dave }))).await.unwrap();
    assert_eq!(status, 202, "{job}");
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(job["status"], "done", "{job}");
    let result = &job["result"];
    assert_eq!(result["tenants"][tenant.id.to_string()]["slug"], "acme", "{result}");
    assert_eq!(result["exports_deleted"], 1, "{result}");
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the canary survives in {leftovers:?}");
    assert!(!files_containing(&data, OTHER.as_bytes()).is_empty(), "Bob's work stays");
    let restored = server.tenancy.backups().restore(&acme, Some(&before.id), None, "test").await.unwrap();
    assert_eq!(restored.forgotten, 1, "the restore forgets the former member too");
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the restore brought the canary back: {leftovers:?}");
    server.stop().await.unwrap();
}

/// An email to someone else that names the erased person (an invitation from them) is blanked
/// by the account's id, whatever name they had when it was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_from_an_erased_person_is_blanked_whatever_their_name_was() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let old_name = format!("Ada {CANARY}");
    ada.submit("/account", "/account/profile", &[("display_name", &old_name)]).await.unwrap();
    let sent = ada
        .submit(
            "/w/acme/members",
            "/w/acme/members/invite",
            &[("email", "erin@example.com"), ("role", "member")],
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 303);
    assert!(
        server.last_email("erin@example.com").await.unwrap().contains(CANARY),
        "the invitation names her"
    );
    // She changes her name before asking to be erased: the old one is only in that email.
    ada.submit("/account", "/account/profile", &[("display_name", "Ada Lovelace")]).await.unwrap();
    let (_, job) =
        ops.call("POST", "/subjects/erase", Some(json!({ "email": "ada@example.com" }))).await.unwrap();
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(job["status"], "done", "{job}");
    let email = server.accounts.outbox().list(Some("erin@example.com"), 1).await.unwrap().remove(0);
    assert_eq!((email.subject.as_str(), email.body.as_str()), ("[erased]", "[erased]"));
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the old name survives in {leftovers:?}");
    server.stop().await.unwrap();
}

/// A purge deletes the workspace's exports (listed in its certificate) and its name and slug;
/// the links answer 410 with a message about the link, both after the soft delete and after
/// the purge, and an expired link says it expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_deletes_the_exports_and_the_name_and_links_answer_410_about_the_link() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let (slug, name) = ("zq-slug-4417", "Zq Name 4417");
    server.accounts.users().create("owen@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let (status, tenant) = ops
        .call(
            "POST",
            "/tenants",
            Some(json!({ "slug": slug, "name": name, "owner_email": "owen@example.com" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{tenant}");
    // What the control plane holds about the workspace beyond its row: an invitation (and its
    // email, which names the workspace), a billing contact, an API token.
    let row = server.tenancy.tenant(&slug.parse().unwrap()).await.unwrap();
    let owen = server.accounts.users().by_email("owen@example.com").await.unwrap();
    let invitee = "zqinvitee4417@example.com";
    server.billing.limits().invite(&row, invitee, Role::Member, &owen, "http://x").await.unwrap();
    let contact = silo_billing::BillingProfile { name: "Zq Billing 4417".into(), ..Default::default() };
    server.billing.profiles().set(row.id, contact, "test").await.unwrap();
    server.member_token("owen@example.com", slug, Role::Owner).await.unwrap();
    let (_, export) = ops.call("POST", &format!("/tenants/{slug}/export"), None).await.unwrap();
    let export = ops.wait_for_job(export["id"].as_str().unwrap()).await.unwrap();
    let link = export["result"]["download"].as_str().unwrap().trim_start_matches("/api/v1").to_owned();
    let zip = data.join("exports").join(format!("{}.zip", export["id"].as_str().unwrap()));
    assert!(zip.is_file());
    assert_eq!(ApiClient::new(server.addr, None).call("GET", &link, None).await.unwrap().0, 200);

    let (status, _) = ops.call("DELETE", &format!("/tenants/{slug}"), None).await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = ApiClient::new(server.addr, None).call("GET", &link, None).await.unwrap();
    assert_eq!(status, 410, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("download link no longer works"), "{body}");
    let (status, purged) = ops.call("DELETE", &format!("/tenants/{slug}?purge=true"), None).await.unwrap();
    assert_eq!(status, 200, "{purged}");
    assert!(!zip.exists(), "the purge deleted the zip");
    let (status, body) = ApiClient::new(server.addr, None).call("GET", &link, None).await.unwrap();
    assert_eq!(status, 410, "{body}");
    let audit = server.tenancy.audit_log(None, None, 500).await.unwrap();
    let certificate = &audit.iter().find(|e| e.action == "tenant.purge").unwrap().detail;
    assert_eq!(certificate["exports"]["jobs"], json!([export["id"]]), "{certificate}");
    assert!(
        server.accounts.memberships().workspaces_of(&owen.id).await.unwrap().is_empty(),
        "no membership is left"
    );
    assert_eq!(server.accounts.memberships().count(row.id).await.unwrap(), 0);
    server.tenancy.control().checkpoint_truncate().await.unwrap();
    for gone in [slug, name, invitee, "Zq Billing 4417"] {
        let left: Vec<_> = files_containing(&data, gone.as_bytes())
            .into_iter()
            .filter(|f| f.to_string_lossy().contains("control.db"))
            .collect();
        assert!(left.is_empty(), "{gone} survives the purge in {left:?}");
    }
    // An expired link says so (a link signed for a time already past).
    ops.call("POST", "/tenants", Some(json!({ "slug": "beta" }))).await.unwrap();
    let (_, export) = ops.call("POST", "/tenants/beta/export", None).await.unwrap();
    let export = ops.wait_for_job(export["id"].as_str().unwrap()).await.unwrap();
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    let expired = server.tenancy.exports().download_link(export["id"].as_str().unwrap(), past).await.unwrap();
    let (status, body) = ApiClient::new(server.addr, None)
        .call("GET", expired.trim_start_matches("/api/v1"), None)
        .await
        .unwrap();
    assert_eq!(status, 410, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("This download link expired on"), "{body}");
    server.stop().await.unwrap();
}

/// Destructive endpoints refuse what they do not know instead of ignoring it: `dry-run` (the
/// CLI's spelling) is a dry run, a misspelt parameter or JSON field is 422 naming it, and
/// nothing is erased or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_endpoints_refuse_unknown_parameters_and_fields() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    server.accounts.users().create("bob@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let member = server.member_token("bob@example.com", "acme", Role::Owner).await.unwrap();
    let body = json!({ "email": "bob@example.com" });
    let (status, plan) = ops.call("POST", "/subjects/erase?dry-run=true", Some(body.clone())).await.unwrap();
    assert_eq!(
        (status, plan["found"].as_bool()),
        (200, Some(true)),
        "the CLI's spelling is a dry run: {plan}"
    );
    let (status, error) = ops.call("POST", "/subjects/erase?dryrun=true", Some(body.clone())).await.unwrap();
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "dryrun", "{error}");
    let (status, error) = ops
        .call("POST", "/subjects/erase", Some(json!({ "email": "bob@example.com", "dry_run": true })))
        .await
        .unwrap();
    assert_eq!(status, 422, "a JSON field the endpoint does not take: {error}");
    assert_eq!(error["error"]["field"], "dry_run", "{error}");
    let (status, error) = ops.call("DELETE", "/tenants/acme?purge=true&force=1", None).await.unwrap();
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "force", "{error}");
    let (status, error) =
        ops.call("PATCH", "/tenants/acme?confirm=yes", Some(json!({ "status": "suspended" }))).await.unwrap();
    assert_eq!(status, 422, "{error}");
    let (status, error) =
        ops.call("PATCH", "/tenants/acme", Some(json!({ "stauts": "suspended" }))).await.unwrap();
    assert_eq!(status, 422, "{error}");
    let api = ApiClient::new(server.addr, Some(&member));
    let (_, project) = api.call("POST", "/w/acme/projects", Some(json!({ "name": "p" }))).await.unwrap();
    let (_, task) = api
        .call("POST", "/w/acme/tasks", Some(json!({ "project_id": project["id"], "title": "t" })))
        .await
        .unwrap();
    let task = format!("/w/acme/tasks/{}", task["id"]);
    assert_eq!(api.call("DELETE", &format!("{task}?soft=true"), None).await.unwrap().0, 422);
    assert_eq!(api.call("PATCH", &task, Some(json!({ "titel": "x" }))).await.unwrap().0, 422);
    // A body that is not an object (fields by position) is refused as well.
    let (status, error) =
        ops.call("POST", "/subjects/erase", Some(json!(["bob@example.com"]))).await.unwrap();
    assert_eq!(status, 422, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("must be a JSON object"), "{error}");
    assert_eq!(ops.call("PATCH", "/tenants/acme", Some(json!(["renamed"]))).await.unwrap().0, 422);
    assert_eq!(api.call("POST", "/w/acme/projects", Some(json!(["p2", "d"]))).await.unwrap().0, 422);
    // Nothing happened.
    assert!(server.accounts.users().by_email("bob@example.com").await.is_ok(), "not erased");
    assert_eq!(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().name, "acme");
    assert_eq!(
        server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().status,
        silo_tenancy::TenantStatus::Active
    );
    assert_eq!(api.call("GET", &task, None).await.unwrap().0, 200, "the task is still there");
    server.stop().await.unwrap();
}

/// An export that finishes while an erasure that reaches it is under way is discarded, not
/// kept: the erasure may already have deleted the exports it knew of. A workspace export is
/// made again once the erasure is done; a person's own export ends with nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_may_hold_a_person_being_erased_is_discarded() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let dave = format!("dave.{CANARY}@example.com");
    server.accounts.users().create(&dave, silo_e2e::PASSWORD, Some("Dave"), "test").await.unwrap();
    work_as(&server, &dave, "acme", Role::Member, CANARY).await;
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let user = server.accounts.users().by_email(&dave).await.unwrap();
    // Dave's erasure has begun (the ledger holds him, acme still pending) when exports finish.
    let ledger = server.tenancy.erasures();
    let subject = ledger.subject_of(&user.id).await.unwrap();
    let email_hash = ledger.email_hash(&dave).await.unwrap();
    ledger.record(&subject, &email_hash, "job-under-way", &[acme.id]).await.unwrap();

    let (_, export) = ops.call("POST", "/tenants/acme/export", None).await.unwrap();
    let id = export["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let discarded = loop {
        let (_, job) = ops.call("GET", &format!("/jobs/{id}"), None).await.unwrap();
        if job["last_error"].is_string() {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(discarded["last_error"].as_str().unwrap().contains("being erased"), "{discarded}");
    assert_eq!(discarded["status"], "queued", "made again later: {discarded}");
    assert!(!data.join("exports").join(format!("{id}.zip")).exists(), "no zip is kept");

    let (_, mine) = ops.call("POST", "/subjects/export", Some(json!({ "email": dave }))).await.unwrap();
    let mine = ops.wait_for_job(mine["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (mine["status"].as_str(), mine["result"]["found"].as_bool()),
        (Some("done"), Some(false)),
        "{mine}"
    );
    assert!(!data.join("exports").join(format!("{}.zip", mine["id"].as_str().unwrap())).exists());
    server.stop().await.unwrap();
}

/// A process killed while it exported or restored leaves a plaintext copy of the workspace
/// (`tmp/<pid>-export-….db`, a `.….restore-<pid>-…` staging file): erasure and purge delete
/// such copies, since their owner is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_left_by_a_killed_process_are_deleted_by_erasure_and_purge() {
    let server = TestServer::start().await.unwrap();
    let data = server.tenancy.settings().data_dir.clone();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    for slug in ["acme", "beta"] {
        let owned = json!({ "slug": slug, "owner_email": "ops@example.com" });
        ops.call("POST", "/tenants", Some(owned)).await.unwrap();
    }
    let dave = format!("dave.{CANARY}@example.com");
    server.accounts.users().create(&dave, silo_e2e::PASSWORD, Some("Dave"), "test").await.unwrap();
    work_as(&server, &dave, "acme", Role::Member, CANARY).await;
    work_as(&server, &dave, "beta", Role::Member, OTHER).await;
    // What a killed process (no process has id 4194999) would have left behind.
    let plant = |slug: &str, copy: std::path::PathBuf| {
        let tenancy = server.tenancy.clone();
        let slug = slug.to_owned();
        async move {
            let tenant = tenancy.tenant(&slug.parse().unwrap()).await.unwrap();
            let db = tenancy.db(tenant.id).await.unwrap();
            db.turn().await.call(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")).unwrap();
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::copy(tenancy.tenant_path(&tenant).unwrap(), &copy).unwrap();
            tenancy.tenant_path(&tenant).unwrap()
        }
    };
    plant("acme", data.join("tmp").join("4194999-export-left.db")).await;
    let beta_path =
        server.tenancy.tenant_path(&server.tenancy.tenant(&"beta".parse().unwrap()).await.unwrap()).unwrap();
    let staging = beta_path.with_file_name(format!(
        ".{}.restore-4194999-left",
        beta_path.file_name().unwrap().to_string_lossy()
    ));
    plant("beta", staging.clone()).await;
    assert!(!files_containing(&data, CANARY.as_bytes()).is_empty());

    let (_, job) = ops.call("POST", "/subjects/erase", Some(json!({ "email": dave }))).await.unwrap();
    let job = ops.wait_for_job(job["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(job["status"], "done", "{job}");
    let leftovers = files_containing(&data, CANARY.as_bytes());
    assert!(leftovers.is_empty(), "the killed export's copy survived the erasure: {leftovers:?}");

    // The restore's staging copy of beta goes with beta's purge.
    plant("beta", staging.clone()).await;
    ops.call("DELETE", "/tenants/beta", None).await.unwrap();
    let (status, purged) = ops.call("DELETE", "/tenants/beta?purge=true", None).await.unwrap();
    assert_eq!(status, 200, "{purged}");
    assert!(!staging.exists(), "the staging copy survived the purge");
    server.stop().await.unwrap();
}

/// Every control-plane table that names a person (`migrations/control/personal_data.toml`) is
/// reached by an erasure step of the application as assembled (each owning crate contributes
/// its steps; billing's are registered when billing is built), and building billing twice over
/// the same accounts registers its steps once.
#[tokio::test]
async fn the_assembled_erasure_reaches_every_table_that_names_a_person() {
    let server = TestServer::start().await.unwrap();
    let reached = server.accounts.erasure_tables();
    let manifest = silo_tenancy::privacy::Manifest::control();
    let naming: Vec<&str> =
        manifest.tables.iter().filter(|(_, t)| t.person.is_some()).map(|(name, _)| name.as_str()).collect();
    assert!(naming.contains(&"billing_profiles") && naming.contains(&"audit_log"), "{naming:?}");
    for table in &naming {
        assert!(reached.contains(table), "no erasure step reaches {table}: {reached:?}");
    }
    let before = server.accounts.erasure_tables().len();
    let again = silo_billing::Billing::new(
        server.accounts.clone(),
        silo_billing::Plans::default(),
        silo_billing::BillingSettings::default(),
    );
    drop(again);
    assert_eq!(server.accounts.erasure_tables().len(), before);
    server.stop().await.unwrap();
}

/// Closing an account does not purge a workspace the operators suspended (their hold), even
/// one the person alone belonged to: it is closed within its grace period, and the erasure
/// still reaches its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_account_leaves_a_suspended_workspace_to_the_operators() {
    let server = TestServer::start().await.unwrap();
    let dave = server.sign_up("dave@example.com", "dave-ws").await.unwrap();
    work_as(&server, "dave@example.com", "dave-ws", Role::Owner, "dave-canary").await;
    let dave_ws: TenantRef = "dave-ws".parse().unwrap();
    server.tenancy.tenants().suspend(&dave_ws, "ops").await.unwrap();
    let closed =
        dave.submit("/account", "/account/delete", &[("password", silo_e2e::PASSWORD)]).await.unwrap();
    assert_eq!((closed.status, closed.location.as_deref()), (303, Some("/login")));
    newest_request_done(&server, "subject.erase").await;
    // Left to no one, it is closed like any workspace without members — soft-deleted, within
    // its grace period — not purged at once with its backups.
    let kept = server.tenancy.tenant(&dave_ws).await.unwrap();
    assert_eq!(kept.status, silo_tenancy::TenantStatus::Deleting, "not purged with the account");
    let file = server.tenancy.tenant_path(&kept).unwrap();
    assert!(
        files_containing(file.parent().unwrap(), b"dave@example.com").is_empty(),
        "the person is erased in it"
    );
    // The operators can bring it back, still suspended.
    let back = server.tenancy.tenants().undelete(&dave_ws, "ops").await.unwrap();
    assert_eq!(back.status, silo_tenancy::TenantStatus::Suspended);
    server.stop().await.unwrap();
}
