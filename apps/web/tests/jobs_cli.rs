//! `silo jobs list|show|retry|cancel` over a data directory whose queue holds real jobs.

mod common;

use common::{fails, json, ok};
use silo_jobs::NewJob;

#[tokio::test]
async fn jobs_are_listed_shown_cancelled_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let tenancy = silo_web::schema::open(common::fleet_settings(data)).await.unwrap();
    let job =
        tenancy.jobs().enqueue(NewJob::new("fleet.backup", serde_json::json!({})), "test").await.unwrap();
    tenancy.shutdown().await;

    let listed = json(data, &["jobs", "list", "--json"]);
    assert_eq!(listed[0]["id"].as_str(), Some(job.id.as_str()));
    assert_eq!(listed[0]["status"], "queued");
    assert!(ok(data, &["jobs", "list"]).contains("fleet.backup"));
    assert_eq!(json(data, &["jobs", "show", &job.id, "--json"])["kind"], "fleet.backup");
    assert!(ok(data, &["jobs", "cancel", &job.id]).contains("cancelled"));
    assert_eq!(json(data, &["jobs", "list", "--status", "cancelled", "--json"]).as_array().unwrap().len(), 1);
    let again = fails(data, &["jobs", "cancel", &job.id]);
    assert!(again.contains("cannot cancel") && again.contains("cancelled"), "{again}");
    assert!(ok(data, &["jobs", "retry", &job.id]).contains("queued"));

    assert!(fails(data, &["jobs", "show", "no-such-job"]).contains("no job `no-such-job`"));
    assert!(fails(data, &["jobs", "list", "--status", "sleeping"]).contains("unknown job status"));
}

#[tokio::test]
async fn export_subject_writes_the_persons_zip_or_says_there_is_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(ok(data, &["tenant", "create", "acme"]).contains("acme"));
    let tenancy = silo_web::schema::open(common::fleet_settings(data)).await.unwrap();
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    accounts.users().create("ada@example.com", "correct horse battery staple", None, "test").await.unwrap();
    let acme = "acme".parse().unwrap();
    accounts.memberships().add(&acme, "ada@example.com", silo_accounts::Role::Owner, "test").await.unwrap();
    tenancy.shutdown().await;

    let out = data.join("ada.zip");
    let printed = ok(data, &["gdpr", "export-subject", "ada@example.com", "--out", out.to_str().unwrap()]);
    assert!(printed.contains("ada.zip (1 workspaces)"), "{printed}");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("subject.json").unwrap(), &mut text).unwrap();
    assert!(text.contains("ada@example.com") && text.contains("\"acme\""), "{text}");

    let missing = fails(data, &["gdpr", "export-subject", "nobody@example.com", "--out", "x.zip"]);
    assert!(missing.contains("no data"), "{missing}");
    assert!(!data.join("x.zip").exists());
}

#[tokio::test]
async fn erase_subject_dry_runs_erases_and_lists_the_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for slug in ["acme", "beta"] {
        assert!(ok(data, &["tenant", "create", slug]).contains(slug));
    }
    let tenancy = silo_web::schema::open(common::fleet_settings(data)).await.unwrap();
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    accounts.users().create("ada@example.com", "correct horse battery staple", None, "test").await.unwrap();
    for slug in ["acme", "beta"] {
        let workspace = slug.parse().unwrap();
        accounts
            .memberships()
            .add(&workspace, "ada@example.com", silo_accounts::Role::Owner, "test")
            .await
            .unwrap();
    }
    tenancy.shutdown().await;

    // The dry run names each workspace and changes nothing.
    let plan: serde_json::Value =
        serde_json::from_str(&ok(data, &["gdpr", "erase-subject", "ada@example.com", "--dry-run", "--json"]))
            .unwrap();
    assert_eq!(plan["found"], true, "{plan}");
    for slug in ["acme", "beta"] {
        assert_eq!(plan["tenants"][slug]["members"]["deleted"], 1, "{plan}");
    }
    let printed = ok(data, &["gdpr", "erase-subject", "ada@example.com", "--dry-run"]);
    assert!(printed.contains("nothing has been changed") && printed.contains("acme"), "{printed}");

    let erased: serde_json::Value =
        serde_json::from_str(&ok(data, &["gdpr", "erase-subject", "ada@example.com", "--json"])).unwrap();
    assert_eq!(erased["found"], true, "{erased}");
    assert_eq!(erased["control_plane"]["users"], 1, "{erased}");
    let again = ok(data, &["gdpr", "erase-subject", "ada@example.com"]);
    assert!(again.contains("already erased"), "{again}");
    let nobody = ok(data, &["gdpr", "erase-subject", "nobody@example.com"]);
    assert!(nobody.contains("no data"), "{nobody}");

    // Three erasure requests, all done before their deadline; none open; none names her.
    let requests: serde_json::Value =
        serde_json::from_str(&ok(data, &["gdpr", "requests", "--json"])).unwrap();
    let requests = requests.as_array().unwrap();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r["kind"] == "subject.erase" && r["status"] == "done" && r["overdue"] == false)
    );
    assert!(
        requests
            .iter()
            .all(|r| r["completed_at"].is_string() && r["deadline"].as_str() > r["received_at"].as_str())
    );
    assert!(!serde_json::to_string(requests).unwrap().contains("ada@"), "{requests:?}");
    let open: serde_json::Value =
        serde_json::from_str(&ok(data, &["gdpr", "requests", "--open", "--json"])).unwrap();
    assert_eq!(open, serde_json::json!([]));
    let table = ok(data, &["gdpr", "requests"]);
    assert!(table.contains("DEADLINE") && table.contains("subject.erase"), "{table}");
}
