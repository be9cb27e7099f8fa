//! Tenant lifecycle on real files: create, suspend, resume, delete, purge, and bad input.

mod common;

use std::time::Duration;

use common::{fixture, fixture_with};
use silo_core::TenantRef;
use silo_tenancy::{CreateTenant, Error, TenantFilter, TenantStatus};

fn slug(s: &str) -> TenantRef {
    s.parse().unwrap()
}

#[tokio::test]
async fn create_places_a_migrated_file_and_audits_it() {
    let f = fixture().await;
    let tenant = f.create("acme").await;
    assert_eq!(tenant.status, TenantStatus::Active);
    assert_eq!(tenant.region, "local");
    assert_eq!(tenant.schema_version, common::latest());
    let path = f.tenancy.tenant_path(&tenant).unwrap();
    let hex = tenant.id.as_uuid().simple().to_string();
    assert!(path.ends_with(format!("regions/local/tenants/{}/{}.db", &hex[..2], tenant.id)));
    assert!(path.exists());

    let db = f.tenancy.db(tenant.id).await.unwrap();
    assert_eq!(db.schema_version(), common::latest());
    let audit = f.tenancy.control().audit_entries(tenant.id, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "tenant.create");
    assert_eq!(audit[0].detail["slug"], "acme");

    let by_slug = f.tenancy.tenant(&slug("acme")).await.unwrap();
    let by_id = f.tenancy.tenant(&TenantRef::Id(tenant.id)).await.unwrap();
    assert_eq!(by_slug.id, by_id.id);
}

#[tokio::test]
async fn bad_input_is_refused_and_leaves_nothing_behind() {
    let f = fixture().await;
    f.create("taken").await;
    let before = f.tenant_files();

    let dup = f.tenancy.tenants().create(CreateTenant::with_slug("taken"), "test").await;
    assert!(matches!(dup, Err(Error::SlugTaken(_))), "{dup:?}");

    for bad in ["..", "a/b", "UPPER", &"x".repeat(64), "", "ünï", "admin"] {
        let err = f.tenancy.tenants().create(CreateTenant::with_slug(bad), "test").await.unwrap_err();
        assert!(matches!(err, Error::InvalidSlug(_)), "{bad:?}: {err}");
        assert!(err.is_user_error());
    }

    let region = CreateTenant { slug: "elsewhere".into(), region: Some("mars".into()), ..Default::default() };
    let err = f.tenancy.tenants().create(region, "test").await.unwrap_err();
    assert!(err.to_string().contains("unknown region `mars`"), "{err}");

    assert_eq!(f.tenant_files(), before, "failed creates must not leave files");
    assert_eq!(f.tenancy.control().list(&TenantFilter::default()).await.unwrap().len(), 1);

    let missing = f.tenancy.tenant(&slug("nobody")).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));
}

#[tokio::test]
async fn a_create_that_loses_the_slug_race_removes_its_file() {
    let f = fixture().await;
    // Both pass the early slug check; one insert must fail on the unique index and clean up.
    let tenants = f.tenancy.tenants();
    let a = tenants.create(CreateTenant::with_slug("race"), "a");
    let b = tenants.create(CreateTenant::with_slug("race"), "b");
    let (a, b) = tokio::join!(a, b);
    assert!(a.is_ok() != b.is_ok(), "exactly one create wins: {a:?} {b:?}");
    let winner = a.as_ref().or(b.as_ref()).unwrap().id.to_string();
    assert!(matches!(a.err().or(b.err()), Some(Error::SlugTaken(_))));
    // Only the winner's database (and its -wal/-shm side files) remain.
    let files = f.tenant_files();
    assert!(!files.is_empty());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&winner), "{name} was left behind by the losing create");
    }
}

/// A purge must reach every copy of the tenant: in a process where no backup service is
/// registered (a tool that opened the fleet alone), it is refused and deletes nothing.
#[tokio::test]
async fn a_purge_without_the_backups_is_refused_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alone =
        silo_tenancy::Tenancy::open(silo_tenancy::Settings::for_data_dir(dir.path()), common::schema())
            .await
            .unwrap();
    let tenant = alone.tenants().create(silo_tenancy::CreateTenant::with_slug("kept"), "test").await.unwrap();
    let path = alone.tenant_path(&tenant).unwrap();
    alone.tenants().delete(&slug("kept"), "op").await.unwrap();
    let refused = alone.tenants().purge(&slug("kept"), "op").await.unwrap_err();
    assert!(matches!(refused, Error::Unavailable(_)), "{refused}");
    assert!(refused.to_string().contains("backups"), "{refused}");
    assert!(path.exists(), "the file is kept");
    assert_eq!(alone.tenant(&slug("kept")).await.unwrap().status, TenantStatus::Deleting);
    let erasure = alone.supersede_control_copies().await.unwrap_err();
    assert!(matches!(erasure, Error::Unavailable(_)), "{erasure}");
    // Once the backups are there, the same purge goes through.
    silo_backups::Backups::of(&alone);
    assert_eq!(alone.tenants().purge(&slug("kept"), "op").await.unwrap().status, TenantStatus::Deleted);
    assert!(!path.exists());
    drop(alone);
}

#[tokio::test]
async fn suspend_resume_delete_purge() {
    let f = fixture().await;
    let tenant = f.create("cycle").await;
    let other = f.create("bystander").await;
    let path = f.tenancy.tenant_path(&tenant).unwrap();
    let held = f.tenancy.db(tenant.id).await.unwrap();

    f.tenancy.tenants().suspend(&slug("cycle"), "op").await.unwrap();
    assert!(held.is_retired());
    assert!(matches!(f.tenancy.db(tenant.id).await.unwrap_err().root(), Error::Suspended(_)));
    let again = f.tenancy.tenants().suspend(&slug("cycle"), "op").await.unwrap_err();
    assert!(matches!(again, Error::InvalidTransition { .. }), "{again}");
    assert_eq!(again.to_string(), "cannot suspend tenant `cycle`: it is suspended");
    drop(held);

    f.tenancy.tenants().resume(&slug("cycle"), "op").await.unwrap();
    f.tenancy.db(tenant.id).await.unwrap();

    let early = f.tenancy.tenants().purge(&slug("cycle"), "op").await.unwrap_err();
    assert!(matches!(early, Error::InvalidTransition { .. }), "purge needs a soft delete first");

    f.tenancy.tenants().delete(&slug("cycle"), "op").await.unwrap();
    assert!(matches!(f.tenancy.db(tenant.id).await.unwrap_err().root(), Error::Gone(_)));
    assert!(path.exists(), "soft delete keeps the file");

    let purged = f.tenancy.tenants().purge(&slug("cycle"), "op").await.unwrap();
    assert_eq!(purged.status, TenantStatus::Deleted);
    assert!(purged.deleted_at.is_some());
    for suffix in ["", "-wal", "-shm", "-journal"] {
        assert!(!std::path::Path::new(&format!("{}{suffix}", path.display())).exists());
    }
    assert!(matches!(f.tenancy.db(tenant.id).await.unwrap_err().root(), Error::Gone(_)));

    let actions: Vec<_> = f
        .tenancy
        .control()
        .audit_entries(tenant.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["tenant.purge", "tenant.delete", "tenant.resume", "tenant.suspend", "tenant.create"]
    );

    // The slug may be taken again, by a new tenant with a new id and a new path.
    let reborn = f.create("cycle").await;
    assert_ne!(reborn.id, tenant.id);
    assert_ne!(f.tenancy.tenant_path(&reborn).unwrap(), path);
    f.tenancy.db(other.id).await.unwrap();
}

#[tokio::test]
async fn read_only_sql_returns_rows_and_refuses_writes() {
    let f = fixture().await;
    let tenant = f.create("reader").await;
    let db = f.tenancy.db(tenant.id).await.unwrap();
    let project = silo_workspace::projects::create(&db.turn().await, "Launch", "", None).unwrap();
    silo_workspace::tasks::create(
        &db.turn().await,
        &silo_workspace::tasks::NewTask {
            project_id: project,
            title: "Write docs".into(),
            body: "README first".into(),
            ..Default::default()
        },
        None,
    )
    .unwrap();

    let result = f
        .tenancy
        .queries()
        .read_only(&slug("reader"), "SELECT id, title, due_date FROM tasks")
        .await
        .unwrap();
    assert_eq!(result.columns, ["id", "title", "due_date"]);
    assert_eq!(result.rows, vec![vec![serde_json::json!(1), "Write docs".into(), serde_json::Value::Null]]);
    // The integrity check runs through the guard (its full-text part reads `data_version`), on
    // the file's open owner, which is its own again afterwards (writes work).
    let check = f.tenancy.queries().read_only(&slug("reader"), "PRAGMA integrity_check").await.unwrap();
    assert_eq!(check.rows, vec![vec![serde_json::json!("ok")]]);
    silo_workspace::projects::create(&db.turn().await, "After the query", "", None).unwrap();

    let empty = f
        .tenancy
        .queries()
        .read_only(&slug("reader"), "SELECT name FROM projects WHERE id = 99")
        .await
        .unwrap();
    assert_eq!(empty.columns, ["name"]);
    assert!(empty.rows.is_empty());

    for write in ["DELETE FROM tasks", "PRAGMA query_only = 0; DROP TABLE tasks", "CREATE TABLE x(y)"] {
        let err = f.tenancy.queries().read_only(&slug("reader"), write).await.unwrap_err();
        assert!(matches!(err, Error::WriteRefused(_)), "{write}: {err}");
    }
    assert_eq!(silo_workspace::tasks::count_tasks(&db.turn().await).unwrap(), 1);
}

#[tokio::test]
async fn full_text_index_follows_tasks() {
    let f = fixture().await;
    let tenant = f.create("search").await;
    let db = f.tenancy.db(tenant.id).await.unwrap();
    use silo_workspace::{projects, tasks::*};
    let project = projects::create(&db.turn().await, "P", "", None).unwrap();
    let id = create(
        &db.turn().await,
        &NewTask {
            project_id: project,
            title: "Migrate the billing database".into(),
            body: "before Friday".into(),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    create(
        &db.turn().await,
        &NewTask {
            project_id: project,
            title: "Unrelated".into(),
            body: "nothing here".into(),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let hits = search(&db.turn().await, "billing", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].task_id, id);
    assert!(hits[0].snippet.contains("\u{2}billing\u{3}"), "{}", hits[0].snippet);
    // Porter stemming: "migrating" finds "Migrate".
    assert_eq!(search(&db.turn().await, "migrating", 10).await.unwrap().len(), 1);
}

/// A soft delete queues the purge for the end of the grace period; bringing the tenant back
/// cancels it; once due, the application's job workers purge it.
#[tokio::test]
async fn deletion_has_a_grace_period_then_a_job_purges() {
    use silo_jobs::JobStatus;
    use silo_jobs::{PoolSettings, Workers};
    use silo_tenancy::jobs::{self, TENANT_PURGE};

    let f = fixture().await;
    let tenant = f.create("acme").await;
    let acme = TenantRef::Id(tenant.id);
    let tenants = f.tenancy.tenants();
    tenants.delete(&acme, "test").await.unwrap();
    let due = tenants.purge_due(tenant.id).await.unwrap().expect("a purge is scheduled");
    let in_29_days =
        silo_tenancy::control::utc_timestamp(std::time::SystemTime::now() + Duration::from_secs(29 * 86_400));
    assert!(due > in_29_days, "30 days by default: {due}");
    let restored = tenants.undelete(&acme, "test").await.unwrap();
    assert_eq!(restored.status, TenantStatus::Active);
    assert_eq!(tenants.purge_due(tenant.id).await.unwrap(), None, "the purge is cancelled");
    let cancelled = f.tenancy.jobs().list(Some(JobStatus::Cancelled), 10).await.unwrap();
    assert_eq!(cancelled.iter().filter(|j| j.kind == TENANT_PURGE).count(), 1);
    assert!(tenants.undelete(&acme, "test").await.is_err(), "only a deleted tenant comes back");

    // With no grace period, the workers purge it at once.
    let f = fixture_with(|s| s.tenants.deletion_grace_days = 0).await;
    let tenant = f.create("gone").await;
    let files = f.tenant_files();
    assert!(!files.is_empty());
    f.tenancy.tenants().delete(&TenantRef::Id(tenant.id), "test").await.unwrap();
    let mut workers = Workers::new();
    jobs::register(&mut workers, &f.tenancy);
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let settings = PoolSettings { poll: Duration::from_millis(20), ..PoolSettings::default() };
    let pool = tokio::spawn(workers.run(f.tenancy.jobs(), settings, async move {
        let _ = stopping.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while f.tenancy.tenant(&TenantRef::Id(tenant.id)).await.unwrap().status != TenantStatus::Deleted {
        assert!(tokio::time::Instant::now() < deadline, "the purge job did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.tenant_files().is_empty(), "its files are gone");
    stop.send(()).unwrap();
    pool.await.unwrap();
}

/// The tenant files' rows take their times from the process's clock too (`Turn::now`), as the
/// control plane's do: the tenant's creation, a project, a task and its update, the activity.
#[tokio::test]
async fn a_tenant_files_rows_take_their_time_from_the_clock() {
    use silo_workspace::{activity, projects, tasks};
    let at = |text: &str| silo_core::Timestamp::parse(text).unwrap();
    let clock = silo_core::TestClock::at(&at("2026-03-01T08:00:00.000Z"));
    let f = common::fixture_on(&clock).await;
    let tenant = f.create("timed").await;
    assert_eq!(tenant.created_at.as_str(), "2026-03-01T08:00:00.000Z");
    let turn = f.tenancy.db(tenant.id).await.unwrap().turn().await;
    let project = projects::create(&turn, "P", "", None).unwrap();
    clock.advance(Duration::from_secs(3600));
    let new = tasks::NewTask { project_id: project, title: "T".into(), ..Default::default() };
    let task = tasks::create(&turn, &new, None).unwrap();
    clock.advance(Duration::from_secs(60));
    let patch = tasks::TaskPatch { title: Some("T2".into()), ..Default::default() };
    tasks::update(&turn, task, &patch, None).unwrap();
    assert_eq!(
        projects::get(&turn, project).unwrap().unwrap().created_at.as_str(),
        "2026-03-01T08:00:00.000Z"
    );
    let task = tasks::get(&turn, task).unwrap().unwrap();
    assert_eq!(
        (task.created_at.as_str(), task.updated_at.as_str()),
        ("2026-03-01T09:00:00.000Z", "2026-03-01T09:01:00.000Z")
    );
    let times: Vec<String> = activity::recent(&turn, 10).unwrap().iter().map(|a| a.at.to_string()).collect();
    assert_eq!(times, ["2026-03-01T09:01:00.000Z", "2026-03-01T09:00:00.000Z", "2026-03-01T08:00:00.000Z"]);
}
