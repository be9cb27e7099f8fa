//! Backups, restores, purge and region moves against real stores: every scenario of
//! `store_suite!` runs twice, once on the local directory store and once on S3 spoken over
//! HTTP (aws-sdk-s3) to an in-process `s3s-fs` server on a loopback port.

use silo_backups::BackupsExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use silo_accounts::TokenScope;
use silo_backups::BackupKind;
use silo_core::TenantRef;
use silo_e2e::s3::{S3Server, settings_for};
use silo_e2e::{ApiClient, TestServer};
use silo_tenancy::config::{BackupStoreKind, RegionSettings};
use silo_tenancy::{CreateTenant, Error, Tenancy, Tenant};
use silo_workspace::{projects, tasks};

#[derive(Clone, Copy, Debug)]
enum Store {
    Local,
    S3,
}

/// A server whose backups go to `store`, with a second region `eu`.
struct Fixture {
    server: TestServer,
    _s3: Option<S3Server>,
}

impl Fixture {
    async fn new(store: Store) -> Self {
        let s3 = match store {
            Store::Local => None,
            Store::S3 => Some(S3Server::start().await.unwrap()),
        };
        let s3_settings = s3.as_ref().map(S3Server::settings);
        let server = TestServer::start_with(|settings| {
            if let Some(s3) = s3_settings {
                settings.fleet.backup.store = BackupStoreKind::S3;
                settings.fleet.backup.s3 = s3;
            }
            let eu = settings.fleet.data_dir.join("regions/eu");
            settings.fleet.regions.insert("eu".into(), RegionSettings { root: eu });
        })
        .await
        .unwrap();
        Self { server, _s3: s3 }
    }

    fn tenancy(&self) -> &Tenancy {
        &self.server.tenancy
    }
}

/// The product schema's version (what a new tenant file has).
fn latest() -> i64 {
    silo_tenancy::schema::latest_version(silo_workspace::migrations())
}

fn by_slug(slug: &str) -> TenantRef {
    slug.parse().unwrap()
}

/// A tenant with one project and `count` tasks titled `task 1…`.
async fn tenant_with_tasks(tenancy: &Tenancy, slug: &str, count: usize) -> (Tenant, i64) {
    let tenant = tenancy.tenants().create(CreateTenant::with_slug(slug), "test").await.unwrap();
    let db = tenancy.db(tenant.id).await.unwrap();
    let project = projects::create(&db.turn().await, "Roadmap", "", None).unwrap();
    for i in 1..=count {
        add_task(tenancy, &tenant, project, &format!("task {i}")).await;
    }
    (tenant, project)
}

async fn add_task(tenancy: &Tenancy, tenant: &Tenant, project: i64, title: &str) {
    let db = tenancy.db(tenant.id).await.unwrap();
    let new = tasks::NewTask { project_id: project, title: title.into(), ..Default::default() };
    tasks::create(&db.turn().await, &new, None).unwrap();
}

async fn titles(tenancy: &Tenancy, tenant: &TenantRef) -> Vec<String> {
    let result = tenancy.queries().read_only(tenant, "SELECT title FROM tasks ORDER BY id").await.unwrap();
    result.rows.iter().map(|row| row[0].as_str().unwrap().to_owned()).collect()
}

macro_rules! store_suite {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() { super::$scenario(super::Store::Local).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() { super::$scenario(super::Store::S3).await })*
        }
    };
}

store_suite!(
    back_up_list_verify_restore_and_clone,
    backup_during_eight_writers_holds_a_prefix_of_acknowledged_writes,
    restore_in_place_while_requests_are_in_flight,
    bad_objects_and_wrong_keys_change_nothing,
    purge_removes_every_object_and_destroys_the_key,
    scheduler_backs_up_only_changed_tenants_and_prunes,
    incremental_passes_cost_what_changed,
    pre_migration_backup_rolls_back,
    region_move_keeps_the_data,
    point_in_time_restore_reproduces_each_moment,
    an_installation_is_rebuilt_from_the_store_and_the_master_key,
);

async fn back_up_list_verify_restore_and_clone(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let (tenant, project) = tenant_with_tasks(t, "acme", 3).await;
    let backup = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();

    // The catalogue row describes the stored object; its key carries ids only.
    assert_eq!(backup.kind, BackupKind::Manual);
    assert_eq!(backup.schema_version, latest());
    assert_eq!(backup.sha256.len(), 64);
    assert_eq!(backup.object_key, format!("tenants/{}/backups/{}.db.zst.enc", tenant.id, backup.id));
    assert!(!backup.object_key.contains("acme"));
    assert!(backup.size > 0 && backup.size < backup.db_size, "compressed: {backup:?}");
    let listed = t.backups().of_tenant(tenant.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, backup.id);

    // The object really is in the store: a file of the local directory, or of the S3 bucket.
    let object_file = match &f._s3 {
        Some(s3) => s3.bucket_dir().join("silo").join(&backup.object_key),
        None => t.settings().data_dir.join("objects").join(&backup.object_key),
    };
    assert_eq!(
        std::fs::metadata(&object_file).unwrap().len() as i64,
        backup.size,
        "{}",
        object_file.display()
    );

    // The stored bytes are neither SQLite nor zstd: encrypted.
    let backups = t.backups();
    let store_ = backups.store().await.unwrap().store();
    let raw = store_.get(&backup.object_key).await.unwrap();
    assert_eq!(raw.len() as i64, backup.size);
    assert!(!raw.windows(15).any(|w| w == b"SQLite format 3"));
    assert_ne!(&raw[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not a bare zstd frame");

    let verified = t.backups().verify(&by_slug("acme"), None).await.unwrap();
    assert_eq!(verified.restored_size as i64, backup.db_size);
    assert!(t.backups().find(&tenant, Some(&backup.id)).await.unwrap().verified_at.is_some());

    // Later writes are undone by an in-place restore.
    add_task(t, &tenant, project, "after the backup").await;
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 4);
    let restored = t.backups().restore(&by_slug("acme"), Some(&backup.id), None, "test").await.unwrap();
    assert_eq!(restored.backup.id, backup.id);
    assert_eq!(titles(t, &by_slug("acme")).await, ["task 1", "task 2", "task 3"]);
    // The tenant serves again after the restore, reads and writes.
    add_task(t, &tenant, project, "after the restore").await;
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 4);

    // A clone gets its own id, file and slug; the original is untouched.
    let clone =
        t.backups().restore(&by_slug("acme"), Some(&backup.id), Some("acme-copy"), "test").await.unwrap();
    assert_ne!(clone.tenant.id, tenant.id);
    assert_eq!(clone.tenant.slug, "acme-copy");
    assert_eq!(titles(t, &by_slug("acme-copy")).await, ["task 1", "task 2", "task 3"]);
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 4);
    let taken = t.backups().restore(&by_slug("acme"), None, Some("acme-copy"), "test").await.unwrap_err();
    assert!(matches!(taken, Error::SlugTaken(_)), "{taken}");

    let audit = t.control().audit_entries(tenant.id, 20).await.unwrap();
    for action in ["backup.create", "tenant.restore"] {
        assert!(audit.iter().any(|e| e.action == action), "{action} audited");
    }
    f.server.stop().await.unwrap();
}

async fn backup_during_eight_writers_holds_a_prefix_of_acknowledged_writes(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy().clone();
    let (tenant, project) = tenant_with_tasks(&t, "busy", 0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (t, tenant, stop, acked) = (t.clone(), tenant.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    add_task(&t, &tenant, project, &format!("w{w}-{i}")).await;
                    acked[w].store(i, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let backup = t.backups().create(&by_slug("busy"), BackupKind::Manual, "test").await.unwrap();
    let after: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(before.iter().all(|&n| n > 0), "every writer wrote before the backup: {before:?}");

    // The restore checks integrity; its rows are, per writer, exactly 1..=k with k between what
    // was acknowledged before the backup started and after it ended.
    t.backups().restore(&by_slug("busy"), Some(&backup.id), Some("busy-copy"), "test").await.unwrap();
    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for title in titles(&t, &by_slug("busy-copy")).await {
        let (w, i) = title.trim_start_matches('w').split_once('-').unwrap();
        seen.entry(w.parse().unwrap()).or_default().push(i.parse().unwrap());
    }
    for w in 0..8 {
        let mut rows = seen.remove(&w).unwrap_or_default();
        rows.sort_unstable();
        let k = rows.len() as u64;
        assert_eq!(rows, (1..=k).collect::<Vec<_>>(), "writer {w}: a gap-free prefix");
        assert!(before[w] <= k && k <= after[w], "writer {w}: {} <= {k} <= {}", before[w], after[w]);
    }
    f.server.stop().await.unwrap();
}

async fn restore_in_place_while_requests_are_in_flight(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy().clone();
    f.server.sign_up("ada@example.com", "acme").await.unwrap();
    let tenant = t.tenant(&by_slug("acme")).await.unwrap();
    let db = t.db(tenant.id).await.unwrap();
    let project = projects::create(&db.turn().await, "Roadmap", "", None).unwrap();
    drop(db);
    for i in 1..=20 {
        add_task(&t, &tenant, project, &format!("task {i}")).await;
    }
    let backup = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();
    for i in 21..=30 {
        add_task(&t, &tenant, project, &format!("task {i}")).await;
    }
    let token = f
        .server
        .accounts
        .tokens()
        .issue("ada@example.com", TokenScope::Personal("acme".parse().unwrap()), "test")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop) = (ApiClient::new(f.server.addr, Some(&token)), stop.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, _) = client.call("GET", "/w/acme/tasks?limit=50", None).await.unwrap();
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let restored = t.backups().restore(&by_slug("acme"), Some(&backup.id), None, "test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = BTreeMap::<u16, usize>::new();
    for client in clients {
        for (status, n) in client.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    // Requests succeed, or (during the switch only) are told to retry; nothing else.
    eprintln!("responses during the restore: {statuses:?}, unavailable {:?}", restored.unavailable);
    assert!(statuses.keys().all(|s| [200, 503].contains(s)), "{statuses:?}");
    assert!(statuses[&200] > 10, "{statuses:?}");
    assert!(restored.unavailable < Duration::from_secs(5), "{:?}", restored.unavailable);
    assert_eq!(titles(&t, &by_slug("acme")).await.len(), 20);
    let (status, body) = ApiClient::new(f.server.addr, Some(&token))
        .call("GET", "/w/acme/tasks?limit=50", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(20), "{body}");
    f.server.stop().await.unwrap();
}

async fn bad_objects_and_wrong_keys_change_nothing(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let (tenant, _) = tenant_with_tasks(t, "acme", 5).await;
    let backup = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();
    let tenant_dir = t.tenant_path(&tenant).unwrap().parent().unwrap().to_owned();
    let files_before = std::fs::read_dir(&tenant_dir).unwrap().count();

    let unknown = t
        .backups()
        .restore(&by_slug("acme"), Some("0190aaaa-0000-7000-8000-000000000000"), None, "test")
        .await;
    assert!(matches!(unknown, Err(Error::UnknownBackup(_))), "{unknown:?}");
    let unknown_tenant = t.backups().restore(&by_slug("nobody"), None, None, "test").await;
    assert!(matches!(unknown_tenant, Err(Error::NotFound(_))), "{unknown_tenant:?}");

    let backups = t.backups();

    let objects = backups.store().await.unwrap().store();
    let good = objects.get(&backup.object_key).await.unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    for (what, bytes) in [("truncated", good[..good.len() / 2].to_vec()), ("altered", flipped)] {
        objects.put(&backup.object_key, bytes).await.unwrap();
        let error = t.backups().restore(&by_slug("acme"), Some(&backup.id), None, "test").await.unwrap_err();
        assert!(error.to_string().contains("checksum mismatch"), "{what}: {error}");
        let verify = t.backups().verify(&by_slug("acme"), Some(&backup.id)).await.unwrap_err();
        assert!(verify.to_string().contains("checksum mismatch"), "{what}: {verify}");
        let row = t.backups().find(&tenant, Some(&backup.id)).await.unwrap();
        assert!(row.verify_error.is_some(), "the failed verification is recorded");
        assert_eq!(titles(t, &by_slug("acme")).await.len(), 5, "{what}: the tenant is unchanged");
    }
    assert_eq!(std::fs::read_dir(&tenant_dir).unwrap().count(), files_before, "no staging file left");
    objects.put(&backup.object_key, good).await.unwrap();

    // Another master key (another key file) cannot unwrap the tenant's data key.
    let mut other_settings = t.settings().clone();
    other_settings.backup.master_key_file = Some(other_settings.data_dir.join("other.key"));
    let other = silo_web::schema::open(other_settings).await.unwrap();
    let wrong = other.backups().verify(&by_slug("acme"), Some(&backup.id)).await.unwrap_err();
    assert!(wrong.to_string().contains("wrong master key"), "{wrong}");
    let wrong = other
        .backups()
        .restore(&by_slug("acme"), Some(&backup.id), Some("stolen"), "test")
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("wrong master key"), "{wrong}");
    assert!(other.tenant(&by_slug("stolen")).await.is_err(), "no tenant was created");
    other.shutdown().await;

    // With the right key all is well again.
    t.backups().verify(&by_slug("acme"), Some(&backup.id)).await.unwrap();
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 5);
    f.server.stop().await.unwrap();
}

async fn purge_removes_every_object_and_destroys_the_key(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let (tenant, project) = tenant_with_tasks(t, "doomed", 2).await;
    let first = t.backups().create(&by_slug("doomed"), BackupKind::Manual, "test").await.unwrap();
    add_task(t, &tenant, project, "more").await;
    t.backups().create(&by_slug("doomed"), BackupKind::Manual, "test").await.unwrap();
    let (keep, _) = tenant_with_tasks(t, "kept", 1).await;
    t.backups().create(&by_slug("kept"), BackupKind::Manual, "test").await.unwrap();
    let backups = t.backups();
    let objects = backups.store().await.unwrap().store();
    let prefix = format!("tenants/{}/", tenant.id);
    assert_eq!(objects.list(&prefix).await.unwrap().len(), 2);
    // Continuous backup's copies of the control plane hold the tenant's wrapped key (on
    // PostgreSQL there are none: the control plane is not a file of ours).
    let copied = if t.control().is_embedded() {
        let copies = silo_backups::control_copies::PREFIX;
        t.backups().copy_control_now().await.unwrap().unwrap();
        let wrapped_keys = |dir: &std::path::Path| {
            let conn = rusqlite::Connection::open(dir.join("control.db")).unwrap();
            conn.query_row(
                "SELECT count(*) FROM tenant_keys WHERE tenant_id = ?",
                [tenant.id.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        };
        let before = tempfile::tempdir().unwrap();
        let master = t.master_key().await.unwrap();
        silo_backups::control_copies::fetch_newest(objects, master, &before.path().join("control.db"))
            .await
            .unwrap();
        assert_eq!(wrapped_keys(before.path()), 1);
        Some((copies, master, wrapped_keys))
    } else {
        None
    };

    t.tenants().delete(&by_slug("doomed"), "test").await.unwrap();
    t.tenants().purge(&TenantRef::Id(tenant.id), "test").await.unwrap();
    let keys: i64 = silo_core::db::query_scalar("SELECT count(*) FROM tenant_keys WHERE tenant_id = ?")
        .bind(tenant.id.to_string())
        .fetch_one(t.control().reader())
        .await
        .unwrap();
    assert_eq!(keys, 0, "the control plane keeps no key of the purged tenant");
    if let Some((copies, master, wrapped_keys)) = copied {
        assert_eq!(objects.list(copies).await.unwrap().len(), 1, "one copy replaced the older ones");
        let after = tempfile::tempdir().unwrap();
        silo_backups::control_copies::fetch_newest(objects, master, &after.path().join("control.db"))
            .await
            .unwrap();
        assert_eq!(wrapped_keys(after.path()), 0, "no copy in the store keeps the purged tenant's key");
    }

    assert!(objects.list(&prefix).await.unwrap().is_empty(), "no object of the tenant remains");
    assert!(t.backups().of_tenant(tenant.id).await.unwrap().is_empty());
    assert!(!t.tenant_path(&tenant).unwrap().exists());
    let restore =
        t.backups().restore(&TenantRef::Id(tenant.id), Some(&first.id), None, "test").await.unwrap_err();
    assert!(matches!(restore, Error::KeyDestroyed(_)), "{restore}");
    assert!(restore.to_string().contains("data key is destroyed"), "{restore}");
    let clone = t
        .backups()
        .restore(&TenantRef::Id(tenant.id), Some(&first.id), Some("revived"), "test")
        .await
        .unwrap_err();
    assert!(matches!(clone, Error::KeyDestroyed(_)), "{clone}");

    // The deletion certificate.
    let audit = t.control().audit_entries(tenant.id, 10).await.unwrap();
    let certificate = &audit.iter().find(|e| e.action == "tenant.purge").unwrap().detail;
    assert_eq!(certificate["certificate"], "tenant deletion");
    assert_eq!(certificate["backups"]["objects_deleted"], 2);
    assert_eq!(certificate["backups"]["catalogue_rows_removed"], 2);
    assert_eq!(certificate["data_key_destroyed"], true);
    assert!(certificate["purged_at"].is_string());

    // Other tenants keep their backups.
    assert_eq!(objects.list(&format!("tenants/{}/", keep.id)).await.unwrap().len(), 1);
    t.backups().verify(&by_slug("kept"), None).await.unwrap();
    f.server.stop().await.unwrap();
}

/// After the first pass, a pass looks only at the marked tenants and those added since: the
/// idle one does nothing; a write, a new tenant (not opened, so never marked) and a deleted
/// tenant are each handled.
async fn incremental_passes_cost_what_changed(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let mut tenants = Vec::new();
    for slug in ["one", "two", "three"] {
        tenants.push(tenant_with_tasks(t, slug, 1).await);
    }
    let mut scheduler = silo_backups::scheduler::Scheduler::new(t.backups());
    let first = scheduler.pass().await.unwrap();
    assert_eq!((first.backed_up, first.unchanged), (3, 0), "the first pass looks at the whole fleet");
    let idle = scheduler.pass().await.unwrap();
    assert_eq!((idle.backed_up, idle.unchanged, idle.failed.len()), (0, 3, 0));

    let (tenant, project) = &tenants[0];
    add_task(t, tenant, *project, "a change").await;
    let request = silo_tenancy::CreateTenant::with_slug("added");
    let added = t.tenants().create(request, "test").await.unwrap();
    let request = silo_tenancy::CreateTenant::with_slug("gone");
    let gone = t.tenants().create(request, "test").await.unwrap();
    t.tenants().delete(&TenantRef::Id(gone.id), "test").await.unwrap();
    let changed = scheduler.pass().await.unwrap();
    assert_eq!(
        (changed.backed_up, changed.unchanged),
        (2, 2),
        "the written one and the added one: {changed:?}"
    );
    assert_eq!(t.backups().of_tenant(tenant.id).await.unwrap().len(), 2);
    assert_eq!(t.backups().of_tenant(added.id).await.unwrap().len(), 1);
    assert!(t.backups().of_tenant(gone.id).await.unwrap().is_empty(), "a deleted tenant is not backed up");
    let idle = scheduler.pass().await.unwrap();
    assert_eq!((idle.backed_up, idle.unchanged), (0, 4));
    f.server.stop().await.unwrap();
}

async fn scheduler_backs_up_only_changed_tenants_and_prunes(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let mut tenants = Vec::new();
    for slug in ["one", "two", "three"] {
        tenants.push(tenant_with_tasks(t, slug, 1).await);
    }
    let first = t.backups().scheduled_pass(false).await.unwrap();
    assert_eq!((first.backed_up, first.unchanged), (3, 0), "no backup yet: all three");
    let idle = t.backups().scheduled_pass(false).await.unwrap();
    assert_eq!((idle.backed_up, idle.unchanged), (0, 3), "nothing changed");
    let (tenant, project) = &tenants[1];
    add_task(t, tenant, *project, "a change").await;
    // A read does not count as a change.
    titles(t, &by_slug("three")).await;
    let db = t.db(tenants[2].0.id).await.unwrap();
    projects::list(&db.turn().await, None, 10).unwrap();
    let changed = t.backups().scheduled_pass(false).await.unwrap();
    assert_eq!((changed.backed_up, changed.unchanged), (1, 2), "only the tenant written to");
    assert_eq!(t.backups().of_tenant(tenant.id).await.unwrap().len(), 2);
    let backups = t.backups();
    let objects = backups.store().await.unwrap().store();
    assert_eq!(objects.list("tenants/").await.unwrap().len(), 4, "four PUTs in all");

    // Retention keeps recent backups; orphans (objects without a row) go once they are old.
    let old_id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 0));
    let old_orphan = format!("tenants/{}/backups/{old_id}.db.zst.enc", tenant.id);
    let fresh_orphan = format!("tenants/{}/backups/{}.db.zst.enc", tenant.id, uuid::Uuid::now_v7());
    objects.put(&old_orphan, b"killed mid-backup".to_vec()).await.unwrap();
    objects.put(&fresh_orphan, b"backup in progress".to_vec()).await.unwrap();
    let report = t.backups().prune().await.unwrap();
    assert_eq!((report.expired, report.orphans), (0, 1));
    let left = objects.list("tenants/").await.unwrap();
    assert!(!left.contains(&old_orphan) && left.contains(&fresh_orphan));
    assert_eq!(t.backups().verify_sample(10).await.unwrap(), (4, vec![]), "the sample restores");
    f.server.stop().await.unwrap();
}

async fn pre_migration_backup_rolls_back(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let (tenant, _) = tenant_with_tasks(t, "acme", 2).await;
    t.cache().clear().await;
    let next = silo_tenancy::schema::extended(
        silo_workspace::migrations(),
        latest() + 1,
        "labels",
        "CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    );
    let summary = t.fleet().migrate(vec![tenant.clone()], &next, 1, true, &|_| {}).await.unwrap();
    assert_eq!(summary.migrated, 1, "{summary:?}");
    let backups = t.backups().of_tenant(tenant.id).await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!((backups[0].kind, backups[0].schema_version), (BackupKind::PreMigration, latest()));
    // Already current: no second snapshot.
    t.fleet()
        .migrate(vec![t.tenant(&by_slug("acme")).await.unwrap()], &next, 1, true, &|_| {})
        .await
        .unwrap();
    assert_eq!(t.backups().of_tenant(tenant.id).await.unwrap().len(), 1);

    // `silo migrate --rollback` restores that backup in place.
    let tables = "SELECT count(*) FROM sqlite_schema WHERE name = 'labels'";
    let restored = t.backups().restore(&by_slug("acme"), Some(&backups[0].id), None, "test").await.unwrap();
    assert_eq!(restored.tenant.schema_version, latest());
    let labels = t.queries().read_only(&by_slug("acme"), tables).await.unwrap();
    assert_eq!(labels.rows[0][0], 0, "the migration is undone");
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 2);
    f.server.stop().await.unwrap();
}

/// Continuous backup: a snapshot starts the chain, commits ship as segments, and a restore to
/// any moment — between segments, inside one, after the handle closed — gives exactly the
/// rows the tenant had then; a moment before the chain's snapshot is refused by name.
async fn point_in_time_restore_reproduces_each_moment(store: Store) {
    use silo_core::Timestamp;
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    t.backups().logs().enable();
    let (tenant, project) = tenant_with_tasks(t, "acme", 1).await;
    let started = t.backups().ship_changes().await;
    assert_eq!((started.chains_started, started.failed.len()), (1, 0), "{started:?}");
    let snapshot = t.backups().of_tenant(tenant.id).await.unwrap().remove(0);

    let tick = || tokio::time::sleep(Duration::from_millis(5));
    let mut moments = Vec::new();
    for i in 2..=9 {
        tick().await;
        match i {
            // A deletion frees pages; a big task spans several.
            5 => {
                let db = t.db(tenant.id).await.unwrap();
                db.turn()
                    .await
                    .call(|conn| conn.execute("DELETE FROM tasks WHERE title = 'task 3'", []))
                    .unwrap();
            }
            6 => {
                let db = t.db(tenant.id).await.unwrap();
                let body = "x".repeat(20_000);
                let new = tasks::NewTask {
                    project_id: project,
                    title: "task 6".into(),
                    body,
                    ..Default::default()
                };
                tasks::create(&db.turn().await, &new, None).unwrap();
            }
            // The handle closes with commits not shipped yet: they are read out first.
            8 => {
                add_task(t, &tenant, project, "task 8").await;
                t.cache().clear().await;
            }
            _ => add_task(t, &tenant, project, &format!("task {i}")).await,
        }
        tick().await;
        moments.push((Timestamp::now(), titles(t, &by_slug("acme")).await));
        // Segments end between moments 3 and 4 and after 7; the rest ship at the end.
        if i == 4 || i == 7 {
            let lag = t.backups().logs().lag();
            assert!(lag.tenants_behind == 1 && lag.unshipped_bytes >= 4096, "{lag:?}");
            let run = t.backups().ship_changes().await;
            assert!(run.segments == 1 && run.failed.is_empty(), "{run:?}");
        }
    }
    let last = t.backups().ship_changes().await;
    assert!(last.segments == 1 && last.failed.is_empty(), "{last:?}");
    assert_eq!(t.backups().logs().lag().tenants_behind, 0);

    for (n, (at, expected)) in moments.iter().enumerate() {
        let slug = format!("acme-at-{n}");
        let restored = t.backups().restore_to(&by_slug("acme"), at, Some(&slug), "test").await.unwrap();
        assert_eq!(restored.backup.id, snapshot.id);
        assert_eq!(&titles(t, &by_slug(&slug)).await, expected, "restored to moment {n} ({at})");
        assert_eq!(restored.tenant.schema_version, latest());
        let check = t.queries().read_only(&by_slug(&slug), "PRAGMA integrity_check").await.unwrap();
        assert_eq!(check.rows[0][0], "ok");
    }

    // In place, to a moment inside the first segment.
    let (at, expected) = &moments[1];
    let restored = t.backups().restore_to(&by_slug("acme"), at, None, "test").await.unwrap();
    assert!(restored.commits_replayed >= 2, "{}", restored.commits_replayed);
    let reached = restored.reached.clone().unwrap();
    assert!(reached <= *at && reached > snapshot.created_at, "{reached} for {at}");
    assert_eq!(&titles(t, &by_slug("acme")).await, expected);
    // The restored file starts a chain of its own: a later moment shows it, not what it
    // replaced.
    let next = t.backups().ship_changes().await;
    assert_eq!(next.chains_started, 1, "{next:?}");
    add_task(t, &tenant, project, "after the restore").await;
    assert_eq!(t.backups().ship_changes().await.segments, 1);
    tick().await;
    let now = Timestamp::now();
    t.backups().restore_to(&by_slug("acme"), &now, Some("acme-later"), "test").await.unwrap();
    let mut later = expected.clone();
    later.push("after the restore".into());
    assert_eq!(titles(t, &by_slug("acme-later")).await, later);

    // A write through a connection without the hooks (the tenant closed: an erasure, a
    // migration) cannot continue the chain: the next pass starts a new one that has it.
    t.cache().clear().await;
    let path = t.tenant_path(&tenant).unwrap();
    t.cache()
        .with_file(tenant.id, path, |conn| {
            Ok(conn.execute("UPDATE tasks SET title = 'renamed' WHERE title = 'task 2'", [])?)
        })
        .await
        .unwrap();
    let after = t.backups().ship_changes().await;
    assert_eq!(after.chains_started, 1, "{after:?}");
    tick().await;
    let now = Timestamp::now();
    t.backups().restore_to(&by_slug("acme"), &now, Some("acme-renamed"), "test").await.unwrap();
    assert!(titles(t, &by_slug("acme-renamed")).await.contains(&"renamed".to_owned()));

    // Before the chain's snapshot there is nothing to start from.
    let before = Timestamp::from_unix_ms(snapshot.created_at.unix_ms() - 1);
    let refused =
        t.backups().restore_to(&by_slug("acme"), &before, Some("too-early"), "test").await.unwrap_err();
    assert!(
        matches!(refused, Error::Invalid { field: "at", .. })
            && refused.to_string().contains("earliest backup"),
        "{refused}"
    );
    let future = Timestamp::from_unix_ms(Timestamp::now().unix_ms() + 60_000);
    let refused = t.backups().restore_to(&by_slug("acme"), &future, None, "test").await.unwrap_err();
    assert!(refused.to_string().contains("in the future"), "{refused}");
    f.server.stop().await.unwrap();
}

/// A restore to a moment reproduces the schema of that moment: before an upgrade's migration
/// the old `user_version` and tables, after it the new ones with what was written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn point_in_time_restore_across_a_migration() {
    use silo_core::Timestamp;
    use silo_tenancy::Settings;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { data_dir: dir.path().join("data"), ..Settings::default() };
    let tick = || tokio::time::sleep(Duration::from_millis(5));
    // The release before: the product's schema.
    let before = silo_web::schema::open(settings.clone()).await.unwrap();
    before.backups().logs().enable();
    let (tenant, project) = tenant_with_tasks(&before, "acme", 1).await;
    before.backups().ship_changes().await;
    add_task(&before, &tenant, project, "before the upgrade").await;
    assert_eq!(before.backups().ship_changes().await.segments, 1);
    tick().await;
    let old_moment = (Timestamp::now(), titles(&before, &by_slug("acme")).await);
    tick().await;
    before.shutdown().await;

    // The upgrade: one more migration, applied by the fleet migration (with its backup).
    let next: &'static [sqlx::migrate::Migration] = Box::leak(
        silo_tenancy::schema::extended(
            silo_workspace::migrations(),
            latest() + 1,
            "labels",
            "CREATE TABLE labels (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        )
        .into_boxed_slice(),
    );
    let tenant_schema = silo_tenancy::TenantSchema { migrations: next, ..silo_workspace::schema() };
    let schema = silo_tenancy::Schema { tenant: tenant_schema, ..silo_web::schema::schema() };
    let after = Tenancy::open(settings, schema).await.unwrap();
    after.backups().logs().enable();
    let summary = after.fleet().migrate(vec![tenant.clone()], next, 1, true, &|_| {}).await.unwrap();
    assert_eq!(summary.migrated, 1, "{summary:?}");
    let db = after.db(tenant.id).await.unwrap();
    db.turn().await.call(|conn| conn.execute("INSERT INTO labels (name) VALUES ('urgent')", [])).unwrap();
    drop(db);
    add_task(&after, &tenant, project, "after the upgrade").await;
    after.backups().ship_changes().await;
    after.backups().ship_changes().await;
    tick().await;
    let new_moment = (Timestamp::now(), titles(&after, &by_slug("acme")).await);

    let version = |slug: &str| {
        let after = after.clone();
        let slug = slug.to_owned();
        async move {
            let rows = after.queries().read_only(&by_slug(&slug), "PRAGMA user_version").await.unwrap();
            rows.rows[0][0].as_i64().unwrap()
        }
    };
    let labels = "SELECT count(*) FROM sqlite_schema WHERE name = 'labels'";
    after.backups().restore_to(&by_slug("acme"), &old_moment.0, Some("acme-old"), "test").await.unwrap();
    assert_eq!(version("acme-old").await, latest());
    assert_eq!(titles(&after, &by_slug("acme-old")).await, old_moment.1);
    let old_labels = after.queries().read_only(&by_slug("acme-old"), labels).await.unwrap();
    assert_eq!(old_labels.rows[0][0], 0, "no labels table before the upgrade");

    let restored =
        after.backups().restore_to(&by_slug("acme"), &new_moment.0, Some("acme-new"), "test").await.unwrap();
    assert_eq!(restored.tenant.schema_version, latest() + 1);
    assert_eq!(version("acme-new").await, latest() + 1);
    assert_eq!(titles(&after, &by_slug("acme-new")).await, new_moment.1);
    let names = after.queries().read_only(&by_slug("acme-new"), "SELECT name FROM labels").await.unwrap();
    assert_eq!(names.rows.len(), 1, "what was written after the migration is there");
    after.shutdown().await;
}

/// Each chain records where it ends; once the backups after a chain are gone (retention), a
/// moment past its end cannot be reproduced and is refused, naming the moments that can.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_past_the_end_of_a_chain_is_refused() {
    use silo_core::Timestamp;
    let f = Fixture::new(Store::Local).await;
    let t = f.tenancy();
    t.backups().logs().enable();
    let (tenant, project) = tenant_with_tasks(t, "acme", 1).await;
    t.backups().ship_changes().await;
    let tick = || tokio::time::sleep(Duration::from_millis(5));
    add_task(t, &tenant, project, "in the first chain").await;
    tick().await;
    let inside_first = (Timestamp::now(), titles(t, &by_slug("acme")).await);
    tick().await;
    let second = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();
    add_task(t, &tenant, project, "in the second chain").await;
    assert_eq!(t.backups().ship_changes().await.segments, 1);
    tick().await;
    let inside_second = Timestamp::now();
    tick().await;
    let third = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();
    let catalogue = t.backups().of_tenant(tenant.id).await.unwrap();
    assert_eq!(catalogue[0].chain_until, None, "the newest chain is open");
    assert_eq!(catalogue[1].chain_until.as_ref(), Some(&third.created_at), "closed by the next snapshot");
    assert_eq!(catalogue[2].chain_until.as_ref(), Some(&second.created_at));

    // Retention lets the second backup go: its chain's moments cannot be reproduced.
    silo_core::db::query("DELETE FROM backups WHERE id = ?")
        .bind(&second.id)
        .execute(t.control().writer())
        .await
        .unwrap();
    let refused =
        t.backups().restore_to(&by_slug("acme"), &inside_second, Some("gap"), "test").await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, Error::Invalid { field: "at", .. }), "{message}");
    assert!(
        message.contains("exactly")
            && message.contains(second.created_at.as_str())
            && message.contains(third.created_at.as_str()),
        "{message}"
    );
    // The first chain's moments still can.
    t.backups().restore_to(&by_slug("acme"), &inside_first.0, Some("first"), "test").await.unwrap();
    assert_eq!(titles(t, &by_slug("first")).await, inside_first.1);
    f.server.stop().await.unwrap();
}

/// Disaster recovery: the control plane's copies and the tenants' chains rebuild an empty data
/// directory (`silo recover --from-store`'s two steps).
async fn an_installation_is_rebuilt_from_the_store_and_the_master_key(store: Store) {
    use silo_backups::recover::recover_control;
    if silo_e2e::skip_on_postgres("`silo recover` rebuilds control.db from its copies in the store") {
        return;
    }
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    t.backups().logs().enable();
    let (acme, acme_project) = tenant_with_tasks(t, "acme", 3).await;
    let (beta, beta_project) = tenant_with_tasks(t, "beta", 2).await;
    assert_eq!(t.backups().ship_changes().await.chains_started, 2);
    add_task(t, &beta, beta_project, "beta after its snapshot").await;
    assert_eq!(t.backups().ship_changes().await.segments, 1);

    // The control plane reaches the store once per change, not when unchanged.
    let copy = t.backups().copy_control_now().await.unwrap().expect("a first copy");
    assert!(copy.db_size > 4096 && copy.stored > 0, "{copy:?}");
    assert!(t.backups().copy_control_now().await.unwrap().is_none(), "nothing changed since");
    assert_eq!(t.backups().control_copies().behind_seconds(), 0.0);

    // After the copy: a snapshot its catalogue does not know, a commit after that snapshot,
    // and a tenant it never saw.
    let late = t.backups().create(&by_slug("acme"), BackupKind::Manual, "test").await.unwrap();
    add_task(t, &acme, acme_project, "acme after the copy").await;
    assert_eq!(t.backups().ship_changes().await.segments, 1);
    tenant_with_tasks(t, "gamma", 1).await;
    let expected_acme = titles(t, &by_slug("acme")).await;
    let expected_beta = titles(t, &by_slug("beta")).await;
    assert!(expected_acme.contains(&"acme after the copy".to_owned()));

    // The disk is lost: a new data directory, the same store and master key.
    let rebuilt = tempfile::tempdir().unwrap();
    let mut settings = t.settings().clone();
    settings.data_dir = rebuilt.path().join("data");
    settings.regions.insert("eu".into(), RegionSettings { root: settings.data_dir.join("regions/eu") });
    settings.backup.local_dir = Some(t.settings().local_objects_dir());
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(t.settings().master_key_path(), key.path()).unwrap();

    let mut no_key = settings.clone();
    no_key.backup.master_key_file = Some(rebuilt.path().join("missing.key"));
    let refused = recover_control(&no_key).await.unwrap_err();
    assert!(refused.to_string().contains("no master key"), "{refused}");
    assert!(!no_key.control_db_path().exists(), "a refused recovery writes nothing");

    settings.backup.master_key_file = Some(key.path().to_owned());
    let control = recover_control(&settings).await.unwrap();
    assert!(control.size > 4096);
    let again = recover_control(&settings).await.unwrap_err();
    assert!(again.to_string().contains("rebuilds an empty data directory"), "{again}");

    let r = silo_web::schema::open(settings).await.unwrap();
    let _accounts = silo_accounts::Accounts::new(r.clone(), Default::default());
    let run = r.backups().recover_tenants("test").await.unwrap();
    assert!(run.failed.is_empty(), "{run:?}");
    assert_eq!(run.adopted, 1, "acme's snapshot after the copy: {run:?}");
    let slugs: Vec<&str> = run.restored.iter().map(|(slug, _, _)| slug.as_str()).collect();
    assert_eq!(slugs, ["acme", "beta"], "gamma was created after the copy");
    assert_eq!(titles(&r, &by_slug("acme")).await, expected_acme);
    assert_eq!(titles(&r, &by_slug("beta")).await, expected_beta);
    for slug in ["acme", "beta"] {
        let check = r.queries().read_only(&by_slug(slug), "PRAGMA integrity_check").await.unwrap();
        assert_eq!(check.rows[0][0], "ok");
    }
    let catalogue = r.backups().of_tenant(acme.id).await.unwrap();
    assert_eq!(catalogue[0].id, late.id, "the adopted snapshot is catalogued");
    assert_eq!(catalogue[0].schema_version, latest());
    r.shutdown().await;
    f.server.stop().await.unwrap();
}

async fn region_move_keeps_the_data(store: Store) {
    let f = Fixture::new(store).await;
    let t = f.tenancy();
    let (tenant, project) = tenant_with_tasks(t, "nomad", 4).await;
    let old_path = t.tenant_path(&tenant).unwrap();
    let unknown = t.backups().relocations().relocate(&by_slug("nomad"), "mars", "test").await.unwrap_err();
    assert!(unknown.to_string().contains("unknown region"), "{unknown}");
    let same = t.backups().relocations().relocate(&by_slug("nomad"), "local", "test").await.unwrap_err();
    assert!(same.to_string().contains("already in region"), "{same}");
    assert!(old_path.exists(), "failed moves change nothing");

    let moved = t.backups().relocations().relocate(&by_slug("nomad"), "eu", "test").await.unwrap();
    assert_eq!((moved.from.as_str(), moved.tenant.region.as_str()), ("local", "eu"));
    assert_eq!(moved.backup.kind, BackupKind::PreMove);
    let new_path = t.tenant_path(&moved.tenant).unwrap();
    assert!(new_path.starts_with(t.settings().data_dir.join("regions/eu")), "{}", new_path.display());
    assert!(new_path.exists() && !old_path.exists());
    assert_eq!(titles(t, &by_slug("nomad")).await.len(), 4);
    add_task(t, &moved.tenant, project, "written in eu").await;
    assert_eq!(titles(t, &by_slug("nomad")).await.len(), 5);
    let audit = t.control().audit_entries(tenant.id, 10).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "tenant.move" && e.detail["to"] == "eu"));
    f.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_refuses_the_start_and_a_running_fleet_retries_it() {
    // A port with nothing listening: the store is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = silo_web::settings::Settings::for_data_dir(dir.path());
    settings.fleet.backup.store = BackupStoreKind::S3;
    settings.fleet.backup.s3 = settings_for(port);
    // The application refuses to start on it, naming the store…
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused =
        silo_web::startup::Application::build_on(settings.clone(), listener).await.err().expect("refused");
    let refused = format!("{refused:#}");
    assert!(refused.contains("backup store") && refused.contains("is not usable"), "{refused}");
    // …and a fleet that is already running (here without a server) retries the store at every
    // use and keeps serving its tenants meanwhile.
    let t = &silo_web::schema::open(settings.fleet).await.unwrap();
    let opened = t.backups().store().await.unwrap_err();
    assert!(opened.to_string().contains("is not usable"), "a clear error at start: {opened}");
    assert!(opened.to_string().contains(&format!("s3://{}", silo_e2e::s3::BUCKET)), "{opened}");

    let (tenant, project) = tenant_with_tasks(t, "acme", 1).await;
    let failed = t.backups().scheduled_pass(false).await.unwrap_err();
    assert!(failed.to_string().contains("is not usable"), "the job reports the failure: {failed}");
    assert!(t.backups().changes().is_marked(tenant.id), "and keeps the tenant for the next pass");
    // Serving is unaffected.
    add_task(t, &tenant, project, "still writable").await;
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 2);

    // The store comes back: the next pass backs the tenant up.
    let _s3 = S3Server::start_on(port).await.unwrap();
    let run = t.backups().scheduled_pass(false).await.unwrap();
    assert_eq!((run.backed_up, run.failed.len()), (1, 0), "{run:?}");
    t.backups().verify(&by_slug("acme"), None).await.unwrap();
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_zip_has_the_snapshot_json_csv_and_a_manifest_during_writes() {
    use std::io::Read;

    let f = Fixture::new(Store::Local).await;
    let t = f.tenancy().clone();
    let (tenant, project) = tenant_with_tasks(&t, "acme", 3).await;
    add_task(&t, &tenant, project, "quotes \"and\", commas\nand lines").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (t, tenant, stop) = (t.clone(), tenant.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                add_task(&t, &tenant, project, &format!("during export {i}")).await;
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = t.settings().data_dir.join("acme-export.zip");
    let manifest = t.exports().export(&by_slug("acme"), &out, "test").await.unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut members = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).unwrap();
        members.insert(member.name().unwrap().to_string(), bytes);
    }
    let stored: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(stored["tenant_id"], tenant.id.to_string());
    assert_eq!(stored["schema_version"], latest());
    assert_eq!(manifest.schema_version, latest());
    for (name, digest) in stored["sha256"].as_object().unwrap() {
        let actual: String = silo_core::tokens::sha256_hex(&members[name]);
        assert_eq!(&actual, digest, "{name}");
    }
    for table in ["tasks", "projects", "members", "comments", "activity", "search_index"] {
        let rows = stored["row_counts"][table].as_u64().unwrap_or_else(|| panic!("{table} exported"));
        let json: Vec<serde_json::Value> =
            serde_json::from_slice(&members[&format!("tables/{table}.json")]).unwrap();
        assert_eq!(json.len() as u64, rows, "{table}.json");
        assert!(members.contains_key(&format!("tables/{table}.csv")), "{table}.csv");
    }
    assert!(!members.keys().any(|m| m.contains("search_index_")), "FTS shadow tables are internal");
    let tasks_json: Vec<serde_json::Value> = serde_json::from_slice(&members["tables/tasks.json"]).unwrap();
    assert!(tasks_json.len() >= 4);
    assert!(tasks_json.iter().any(|t| t["title"] == "quotes \"and\", commas\nand lines"));
    let csv = String::from_utf8(members["tables/tasks.csv"].clone()).unwrap();
    assert!(csv.contains("\"quotes \"\"and\"\", commas\nand lines\""), "{csv}");
    assert_eq!(
        stored["row_counts"]["search_index"], stored["row_counts"]["tasks"],
        "FTS rows match the tasks"
    );

    // The snapshot is a database with exactly the exported rows.
    let snapshot = t.settings().data_dir.join("snapshot-from-zip.db");
    std::fs::write(&snapshot, &members["database.sqlite"]).unwrap();
    let conn = rusqlite::Connection::open(&snapshot).unwrap();
    let count: i64 = conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0)).unwrap();
    assert_eq!(count, tasks_json.len() as i64);
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");

    let missing = t.exports().export(&by_slug("nobody"), &out, "test").await.unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn s3_store_uploads_large_objects_in_parts() {
    use silo_storage::objects::{ObjectStore, PART_SIZE, S3Store};
    let server = S3Server::start().await.unwrap();
    let store = S3Store::new(&server.settings()).unwrap();
    let big: Vec<u8> = (0..2 * PART_SIZE + 12_345).map(|i| (i % 251) as u8).collect();
    store.put("tenants/t/backups/big.db.zst.enc", big.clone()).await.unwrap();
    assert_eq!(store.get("tenants/t/backups/big.db.zst.enc").await.unwrap(), big);
    assert_eq!(store.list("tenants/t/").await.unwrap(), ["tenants/t/backups/big.db.zst.enc"]);
    assert!(store.delete("tenants/t/backups/big.db.zst.enc").await.unwrap());
    assert!(!store.delete("tenants/t/backups/big.db.zst.enc").await.unwrap());
    let missing = store.get("tenants/t/backups/big.db.zst.enc").await.unwrap_err();
    assert!(matches!(missing, silo_storage::Error::ObjectMissing(_)), "{missing}");

    let mut wrong = server.settings();
    wrong.secret_access_key = Some(silo_core::Secret::new("not the secret"));
    let refused = silo_storage::objects::probe(&S3Store::new(&wrong).unwrap()).await.unwrap_err();
    assert!(refused.to_string().contains("is not usable"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_backs_up_verifies_restores_and_moves() {
    let f = Fixture::new(Store::Local).await;
    let t = f.tenancy();
    f.server.operator_token("ops@example.com").await.unwrap();
    let ops = f.server.sign_in("ops@example.com").await.unwrap();
    let (tenant, project) = tenant_with_tasks(t, "acme", 2).await;
    let page = format!("/admin/tenants/{}", tenant.id);
    let act = |action: &str| format!("{page}/{action}");

    let empty = ops.get(&page).await.unwrap();
    assert!(empty.body.contains("No backups yet."), "{}", empty.body);
    assert_eq!(ops.submit(&page, &act("backup"), &[]).await.unwrap().status, 303);
    let shown = ops.get(&page).await.unwrap().body;
    assert!(shown.contains("Backed up: backup") && shown.contains("id=\"backups\""), "{shown}");
    let backup = t.backups().of_tenant(tenant.id).await.unwrap().remove(0);
    assert!(shown.contains(&backup.id));
    ops.submit(&page, &act("verify"), &[]).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("verified: checksum, decryption and integrity"));

    add_task(t, &tenant, project, "after the backup").await;
    let fields = [("backup", backup.id.as_str()), ("confirm", "not-the-slug")];
    ops.submit(&page, &act("restore"), &fields).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("Type the tenant&#x27;s slug exactly to restore"));
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 3, "no typed confirmation, no restore");
    let fields = [("backup", backup.id.as_str()), ("confirm", "acme")];
    ops.submit(&page, &act("restore"), &fields).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("Restored from backup"));
    assert_eq!(titles(t, &by_slug("acme")).await.len(), 2);

    let fields = [("backup", backup.id.as_str()), ("as_slug", "acme-old")];
    let cloned = ops.submit(&page, &act("restore"), &fields).await.unwrap();
    let clone = t.tenant(&by_slug("acme-old")).await.unwrap();
    assert_eq!(cloned.location.as_deref(), Some(format!("/admin/tenants/{}", clone.id).as_str()));
    assert_eq!(titles(t, &by_slug("acme-old")).await.len(), 2);
    // The copy is held for the operators until released.
    let held = ops.get(cloned.location.as_deref().unwrap()).await.unwrap().body;
    assert!(held.contains("id=\"held\"") && held.contains("Release to its members"), "{held}");
    ops.submit(cloned.location.as_deref().unwrap(), &format!("/admin/tenants/{}/resume", clone.id), &[])
        .await
        .unwrap();
    assert!(!t.tenant(&by_slug("acme-old")).await.unwrap().held, "released");

    ops.submit(&page, &act("move"), &[("region", "eu")]).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("Moved from local to eu"));
    assert_eq!(t.tenant(&by_slug("acme")).await.unwrap().region, "eu");
    ops.submit(&page, &act("move"), &[("region", "mars")]).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("unknown region"));

    assert!(ops.get("/admin/fleet").await.unwrap().body.contains("Backup scheduler"));
    // Not an operator: the console's actions do not exist.
    let user = f.server.sign_up("ada@example.com", "adas").await.unwrap();
    assert_eq!(user.submit("/account", &act("backup"), &[]).await.unwrap().status, 404);
    f.server.stop().await.unwrap();
}

/// The console shows what a tenant can be restored to and what is not in the store yet, and
/// restores to a moment; so does the operator API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_api_restore_to_a_moment_and_show_the_window() {
    use silo_core::Timestamp;
    let f = Fixture::new(Store::Local).await;
    let t = f.tenancy();
    t.backups().logs().enable();
    let token = f.server.operator_token("ops@example.com").await.unwrap();
    let ops = f.server.sign_in("ops@example.com").await.unwrap();
    let api = ApiClient::new(f.server.addr, Some(&token));
    let (tenant, project) = tenant_with_tasks(t, "acme", 1).await;
    t.backups().ship_changes().await;
    add_task(t, &tenant, project, "shipped").await;
    t.backups().ship_changes().await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let moment = Timestamp::now();
    let then = titles(t, &by_slug("acme")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    add_task(t, &tenant, project, "later").await;
    t.backups().ship_changes().await;
    let page = format!("/admin/tenants/{}", tenant.id);
    let shown = ops.get(&page).await.unwrap().body;
    assert!(
        shown.contains("id=\"restorable\"") && shown.contains("Every commit is in the backup store."),
        "{shown}"
    );
    add_task(t, &tenant, project, "not shipped").await;
    let shown = ops.get(&page).await.unwrap().body;
    assert!(shown.contains("Not in the backup store yet: commits of the last"), "{shown}");

    let (status, window) = api.call("GET", "/tenants/acme/restorable", None).await.unwrap();
    assert_eq!(status, 200, "{window}");
    assert_eq!(
        (window["continuous"].as_bool(), window["backups"].as_u64()),
        (Some(true), Some(1)),
        "{window}"
    );
    assert!(window["unshipped_bytes"].as_u64() >= Some(4096), "{window}");
    let (from, to) = (window["from"].as_str().unwrap(), window["to"].as_str().unwrap());
    assert!(from < moment.as_str() && moment.as_str() < to, "{window}");

    // The console's form, as a new tenant.
    let act = format!("{page}/restore");
    ops.submit(&page, &act, &[("at", "5 minutes ago"), ("as_slug", "acme-x")]).await.unwrap();
    assert!(ops.get(&page).await.unwrap().body.contains("The moment to restore to:"));
    let done = ops.submit(&page, &act, &[("at", moment.as_str()), ("as_slug", "acme-then")]).await.unwrap();
    assert_eq!(done.status, 303);
    assert_eq!(titles(t, &by_slug("acme-then")).await, then);
    // The API, in place.
    let bad = [
        json_body(&[("at", moment.as_str()), ("backup", "x")]),
        json_body(&[("at", "nonsense")]),
        json_body(&[("at", moment.as_str()), ("as_slug", " ")]),
        json_body(&[("at", moment.as_str()), ("as_slug", "../../etc")]),
    ];
    for body in bad {
        let (status, error) = api.call("POST", "/tenants/acme/restore", Some(body)).await.unwrap();
        assert_eq!(status, 422, "{error}");
    }
    let (status, restored) =
        api.call("POST", "/tenants/acme/restore", Some(json_body(&[("at", moment.as_str())]))).await.unwrap();
    assert_eq!(status, 200, "{restored}");
    assert!(
        restored["reached"].as_str() <= Some(moment.as_str())
            && restored["commits_replayed"].as_u64() >= Some(1),
        "{restored}"
    );
    assert_eq!(titles(t, &by_slug("acme")).await, then);
    f.server.stop().await.unwrap();
}

fn json_body(fields: &[(&str, &str)]) -> serde_json::Value {
    fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_repeatedly_stops_the_run_early() {
    use silo_storage::crypto::MasterKey;
    use silo_storage::objects::S3Store;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // A fleet without a server: the application probes its store at start, and this store is
    // installed without that probe (it went down after start).
    let dir = tempfile::tempdir().unwrap();
    let t = &silo_web::schema::open(silo_tenancy::Settings::for_data_dir(dir.path())).await.unwrap();
    let store = S3Store::new(&settings_for(dead)).unwrap();
    t.backups()
        .install_store(silo_backups::BackupStore::with_store(Arc::new(store), MasterKey::generate()))
        .unwrap();
    for i in 0..8 {
        tenant_with_tasks(t, &format!("tenant-{i}"), 1).await;
    }
    let run =
        t.backups().create_all(t.backups().live_tenants().await.unwrap(), BackupKind::Manual, "test").await;
    assert_eq!((run.backed_up, run.failed.len()), (0, 8), "{run:?}");
    let skipped = run.failed.iter().filter(|(_, e)| e.contains("skipped")).count();
    let tried = 8 - skipped;
    assert!(
        (silo_backups::STORE_FAILURES_IN_A_ROW..8).contains(&tried),
        "tried {tried}, skipped {skipped}: {run:?}"
    );
    assert!(run.failed.iter().any(|(_, e)| e.contains("Connection refused")), "{run:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_loop_reports_its_pass_on_metrics_and_the_fleet_page() {
    let f = Fixture::new(Store::Local).await;
    let t = f.tenancy().clone();
    for slug in ["one", "two"] {
        tenant_with_tasks(&t, slug, 1).await;
    }
    let scheduler =
        tokio::spawn(t.clone().backups().run_scheduler(Duration::from_secs(3600), std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.backups().scheduler_status().last_pass_at.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the first pass did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.abort();
    let status = t.backups().scheduler_status();
    assert_eq!((status.backed_up, status.failed.len(), status.verified), (2, 0, 2), "{status:?}");
    let addr = f.server.addr;
    let (code, metrics) =
        tokio::task::spawn_blocking(move || silo_e2e::http_get(addr, "/metrics")).await.unwrap().unwrap();
    assert_eq!(code, 200);
    for line in [
        "silo_backup_last_pass_backed_up 2",
        "silo_backup_last_pass_failed 0",
        "silo_backup_last_verify_checked 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    f.server.operator_token("ops@example.com").await.unwrap();
    let ops = f.server.sign_in("ops@example.com").await.unwrap();
    let fleet = ops.get("/admin/fleet").await.unwrap().body;
    assert!(fleet.contains("2 backed up") && fleet.contains("2 backups restored and checked"), "{fleet}");
    f.server.stop().await.unwrap();
}

/// On PostgreSQL no copy of the control plane goes to the store, so the copies of the
/// `control.db` an installation had before (`silo control copy-to-postgres`) are removed by
/// the next erasure or purge and by the next prune: they would keep what those removed.
#[tokio::test]
async fn on_postgresql_copies_of_an_earlier_control_db_leave_the_store() {
    if !silo_e2e::on_postgres() {
        return; // on control.db the copies are superseded by a fresh one (tests above)
    }
    let server = TestServer::start().await.unwrap();
    let backups = server.tenancy.backups();
    let store = backups.store().await.unwrap().store();
    // Copies from before this control plane was installed (a day ago); one made now is not
    // this installation's (another sharing the store by mistake) and stays.
    let stale = || {
        let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
        let since = day_ago.duration_since(std::time::UNIX_EPOCH).unwrap();
        let at = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        format!("control/{}.db.zst.enc", uuid::Uuid::new_v7(at))
    };
    let foreign = format!("control/{}.db.zst.enc", uuid::Uuid::now_v7());
    store.put(&foreign, b"another installation's".to_vec()).await.unwrap();
    for _ in 0..3 {
        store.put(&stale(), b"an earlier control.db".to_vec()).await.unwrap();
    }
    assert_eq!(store.list("control/").await.unwrap().len(), 4);
    assert_eq!(backups.supersede_control_copies().await.unwrap(), 3, "an erasure's or a purge's step");
    assert_eq!(store.list("control/").await.unwrap(), std::slice::from_ref(&foreign));
    store.put(&stale(), b"another".to_vec()).await.unwrap();
    let pruned = backups.prune().await.unwrap();
    assert_eq!(pruned.control_copies, 1, "{pruned:?}");
    assert_eq!(store.list("control/").await.unwrap(), [foreign]);
    server.stop().await.unwrap();
}
