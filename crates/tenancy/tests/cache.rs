//! The handle cache on real files: hits, single-flight opens, eviction under load, leases,
//! lazy migration, quarantine and purge under concurrent use.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fixture, fixture_with};
use silo_core::TenantRef;
use silo_storage::sqlite::{self, OpenMode};
use silo_tenancy::cache::{CacheConfig, HandleCache};
use silo_tenancy::{Error, TenantStatus, schema};
use silo_workspace::{projects, tasks};

#[tokio::test]
async fn concurrent_misses_open_once_and_then_hit() {
    let f = fixture().await;
    let tenant = f.create("single").await;
    let gets = (0..50).map(|_| {
        let tenancy = f.tenancy.clone();
        tokio::spawn(async move { tenancy.db(tenant.id).await })
    });
    let handles: Vec<_> =
        futures::future::join_all(gets).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert!(handles.iter().all(|h| Arc::ptr_eq(h, &handles[0])), "one handle for everyone");
    let stats = f.tenancy.cache().stats();
    assert_eq!(stats.opens, 1, "single-flight: {stats:?}");
    f.tenancy.db(tenant.id).await.unwrap();
    let stats = f.tenancy.cache().stats();
    assert!(stats.hits >= 1);
    assert_eq!(stats.hits + stats.misses, 51);
    let text = stats.to_prometheus();
    assert!(text.contains("silo_cache_opens_total 1"), "{text}");
    assert!(text.contains("silo_cache_open_latency_seconds_count 1"));
}

/// Clearing the cache (shutdown) closes every cached file, not only what one run of moka's
/// maintenance gets to.
#[tokio::test]
async fn clearing_closes_every_cached_file() {
    let f = fixture_with(|s| s.cache.capacity = 2_000).await;
    let tenants = futures::future::join_all((0..1_200).map(|i| {
        let tenancy = f.tenancy.clone();
        async move {
            tenancy
                .tenants()
                .create(silo_tenancy::CreateTenant::with_slug(format!("t-{i}")), "test")
                .await
                .unwrap()
        }
    }))
    .await;
    for tenant in &tenants {
        f.tenancy.db(tenant.id).await.unwrap();
    }
    assert!(f.tenancy.cache().stats().open_files >= 1_200, "{:?}", f.tenancy.cache().stats());
    f.tenancy.cache().clear().await;
    assert!(
        f.tenancy.cache().wait_all_closed(Duration::from_secs(30)).await,
        "{:?}",
        f.tenancy.cache().stats()
    );
    assert_eq!(f.tenancy.cache().stats().cached_handles, 0);
}

#[tokio::test]
async fn eviction_never_fails_a_request_in_flight() {
    let f = fixture_with(|s| s.cache.capacity = 2).await;
    let mut tenants = Vec::new();
    for i in 0..6 {
        tenants.push(f.create(&format!("evict-{i}")).await);
    }
    let held = f.tenancy.db(tenants[0].id).await.unwrap();
    let project = projects::create(&held.turn().await, "kept", "", None).unwrap();
    for tenant in &tenants[1..] {
        f.tenancy.db(tenant.id).await.unwrap();
    }
    let stats = f.tenancy.cache().stats();
    assert!(stats.evictions >= 3, "{stats:?}");
    assert!(stats.cached_handles <= 2, "{stats:?}");
    // The evicted handle still serves its holder.
    tasks::create(
        &held.turn().await,
        &tasks::NewTask { project_id: project, title: "after eviction".into(), ..Default::default() },
        None,
    )
    .unwrap();
    assert_eq!(tasks::count_tasks(&held.turn().await).unwrap(), 1);
    drop(held);
    // Once dropped, its connections close: only the cached handles stay open.
    assert!(
        wait_until(|| f.tenancy.cache().stats().open_handles <= 2).await,
        "{:?}",
        f.tenancy.cache().stats()
    );
}

#[tokio::test]
async fn a_lease_refuses_new_handles_and_waits_for_held_ones() {
    let f = fixture().await;
    let tenant = f.create("leased").await;
    let held = f.tenancy.db(tenant.id).await.unwrap();

    let cache = f.tenancy.cache().clone();
    let lease = tokio::spawn(async move { cache.lease(tenant.id).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!lease.is_finished(), "the lease waits for the held handle");
    let refused = f.tenancy.db(tenant.id).await.unwrap_err();
    assert!(matches!(refused.root(), Error::Unavailable(_)), "{refused}");
    assert!(held.is_retired());
    // The holder can still finish its work.
    projects::create(&held.turn().await, "finishing", "", None).unwrap();
    drop(held);

    let lease = lease.await.unwrap().unwrap();
    assert_eq!(f.tenancy.cache().stats().open_handles, 0, "no connection open under the lease");
    assert!(matches!(f.tenancy.cache().lease(tenant.id).await.unwrap_err(), Error::Unavailable(_)));
    drop(lease);
    let db = f.tenancy.db(tenant.id).await.unwrap();
    assert_eq!(tasks::count_tasks(&db.turn().await).unwrap(), 0);
}

#[tokio::test]
async fn a_lease_gives_up_after_its_timeout() {
    let f = fixture_with(|s| s.cache.lease_timeout_ms = 100).await;
    let tenant = f.create("stuck").await;
    let held = f.tenancy.db(tenant.id).await.unwrap();
    let err = f.tenancy.cache().lease(tenant.id).await.unwrap_err();
    assert!(err.to_string().contains("did not close"), "{err}");
    drop(held);
    f.tenancy.db(tenant.id).await.expect("the failed lease was released");
}

#[tokio::test]
async fn a_file_removed_behind_silos_back_is_an_error_and_is_not_recreated() {
    let f = fixture().await;
    let tenant = f.create("vanished").await;
    let path = f.tenancy.tenant_path(&tenant).unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = f.tenancy.db(tenant.id).await.unwrap_err();
    assert!(matches!(err.root(), Error::FileMissing { .. }), "{err}");
    assert!(err.to_string().contains("removed outside Silo"), "{err}");
    assert!(!path.exists());
    let sql = f.tenancy.queries().read_only(&TenantRef::Id(tenant.id), "SELECT 1").await.unwrap_err();
    assert!(matches!(sql, Error::FileMissing { .. }), "{sql}");
    assert!(!path.exists());
}

#[tokio::test]
async fn a_corrupt_file_is_quarantined_and_the_fleet_is_unaffected() {
    let f = fixture().await;
    let bad = f.create("corrupt").await;
    let good = f.create("healthy").await;
    let path = f.tenancy.tenant_path(&bad).unwrap();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    // The request path's lookup, remembered by the directory before the quarantine.
    let slug = bad.slug.clone();
    assert_eq!(f.tenancy.resolve(&slug).await.unwrap().migration_error, None);

    let err = f.tenancy.db(bad.id).await.unwrap_err();
    assert!(matches!(err.root(), Error::Quarantined { .. }), "{err:?}");
    let resolved = f.tenancy.resolve(&slug).await.unwrap();
    assert!(resolved.migration_error.is_some(), "the directory saw the quarantine at once: {resolved:?}");
    let recorded = f.tenancy.tenant(&TenantRef::Id(bad.id)).await.unwrap();
    assert!(recorded.migration_error.as_deref().unwrap().contains("not a database"), "{recorded:?}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8192], "the file is left for inspection");

    // Later gets fail fast from the control plane without touching the file again.
    let again = f.tenancy.db(bad.id).await.unwrap_err();
    assert!(matches!(again.root(), Error::Quarantined { .. }));

    let db = f.tenancy.db(good.id).await.unwrap();
    projects::create(&db.turn().await, "still fine", "", None).unwrap();
}

#[tokio::test]
async fn opening_an_old_file_migrates_it_lazily_or_quarantines_it() {
    let f = fixture().await;
    let tenant = f.create("lazy").await;
    let broken = f.create("lazy-broken").await;
    // The next release adds a column; one tenant already has a conflicting one.
    let next: std::sync::Arc<[_]> = std::sync::Arc::from(schema::extended(
        silo_workspace::migrations(),
        common::latest() + 1,
        "labels",
        "ALTER TABLE tasks ADD COLUMN label TEXT",
    ));
    let path = f.tenancy.tenant_path(&broken).unwrap();
    let mut conn = sqlite::open(&path, Default::default(), OpenMode::Existing).await.unwrap();
    sqlx::query("ALTER TABLE tasks ADD COLUMN label TEXT").execute(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();

    let settings = f.tenancy.settings();
    let config = CacheConfig {
        capacity: 16,
        idle: Duration::from_secs(60),
        tuning: settings.tenant_tuning(),
        lease_timeout: Duration::from_secs(5),
        fd_limit: 20_000,
        open_concurrency: 0,
    };
    let upgraded = HandleCache::new(
        f.tenancy.control().clone(),
        f.tenancy.placement().clone(),
        config,
        next,
        silo_tenancy::directory::Memo::new(),
    );
    let db = upgraded.get(tenant.id).await.unwrap();
    assert_eq!(db.schema_version(), common::latest() + 1);
    assert_eq!(
        f.tenancy.tenant(&TenantRef::Id(tenant.id)).await.unwrap().schema_version,
        common::latest() + 1
    );

    let err = upgraded.get(broken.id).await.unwrap_err();
    assert!(matches!(err.root(), Error::Quarantined { .. }), "{err}");
    let recorded = f.tenancy.tenant(&TenantRef::Id(broken.id)).await.unwrap();
    assert_eq!(recorded.schema_version, common::latest(), "a failed migration leaves the file as it was");
    assert!(recorded.migration_error.unwrap().contains("duplicate column"));
}

#[tokio::test]
async fn purge_while_fifty_tasks_hold_or_request_handles() {
    let f = fixture().await;
    let tenant = f.create("busy").await;
    let path = f.tenancy.tenant_path(&tenant).unwrap();
    let db = f.tenancy.db(tenant.id).await.unwrap();
    let project = projects::create(&db.turn().await, "load", "", None).unwrap();
    drop(db);

    let workers: Vec<_> = (0..50)
        .map(|i| {
            let tenancy = f.tenancy.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0, 0);
                for n in 0..40 {
                    match tenancy.db(tenant.id).await {
                        Ok(db) => {
                            tasks::create(
                                &db.turn().await,
                                &tasks::NewTask {
                                    project_id: project,
                                    title: format!("w{i}-{n}"),
                                    ..Default::default()
                                },
                                None,
                            )
                            .expect("a held handle works");
                            ok += 1;
                        }
                        Err(e) => {
                            assert!(
                                matches!(e.root(), Error::Unavailable(_) | Error::Gone(_)),
                                "unexpected: {e}"
                            );
                            refused += 1;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                (ok, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let slug: TenantRef = "busy".parse().unwrap();
    f.tenancy.tenants().delete(&slug, "test").await.unwrap();
    let purged = f.tenancy.tenants().purge(&slug, "test").await.unwrap();
    assert_eq!(purged.status, TenantStatus::Deleted);

    let (mut ok, mut refused) = (0, 0);
    for worker in workers {
        let (o, r) = worker.await.unwrap();
        ok += o;
        refused += r;
    }
    assert_eq!(ok + refused, 50 * 40);
    assert!(refused > 0, "some requests came after the delete");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = format!("{}{suffix}", path.display());
        assert!(!std::path::Path::new(&file).exists(), "{file} was written after the purge");
    }
    assert_eq!(f.tenancy.cache().stats().open_handles, 0);
}

async fn wait_until(condition: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A write that would take a limited file past its plan's limit is the quota (507), however
/// far below the limit the file was — the disk's free space, not the fill level, tells it from
/// a full disk.
#[tokio::test]
async fn a_write_past_the_plan_limit_is_the_quota_however_full_the_file_was() {
    let f = fixture().await;
    f.tenancy.cache().set_storage_limits(Arc::new(|_plan: &str| Some(2_000_000)));
    let tenant = f.create("quota").await;
    let db = f.tenancy.db(tenant.id).await.unwrap();
    db.turn().await.call(|conn| conn.execute_batch("CREATE TABLE ballast (b BLOB)")).unwrap();
    // A third of the limit, then one statement of more than the rest.
    db.turn().await.call(|conn| conn.execute("INSERT INTO ballast VALUES (randomblob(700000))", [])).unwrap();
    let refused =
        db.turn().await.call(|conn| conn.execute("INSERT INTO ballast VALUES (randomblob(1600000))", []));
    let error = refused.unwrap_err();
    assert!(matches!(error, Error::QuotaExceeded(_)), "{error:?}");
    assert_eq!(error.kind(), silo_core::ErrorKind::QuotaExceeded);
    let rows: i64 = db
        .turn()
        .await
        .call(|conn| conn.query_row("SELECT count(*) FROM ballast", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, 1, "the refused write was rolled back, the first one kept");
    // Unlimited, the same write goes through.
    f.tenancy.cache().set_storage_limits(Arc::new(|_plan: &str| None));
    f.tenancy.cache().apply_plan(&tenant).await.unwrap();
    db.turn()
        .await
        .call(|conn| conn.execute("INSERT INTO ballast VALUES (randomblob(1600000))", []))
        .unwrap();
}

/// The open file's size limit follows the newest row of its tenant: a plan change sets it at
/// once; a request holding the row read before the change does not put the old limit back;
/// a row changed where this process's `apply_plan` could not reach (another server of a
/// cluster) sets the new limit at the next request that reads it.
#[tokio::test]
async fn the_open_files_limit_follows_the_newest_row_of_its_tenant() {
    let clock = silo_core::TestClock::starting_now();
    let f = common::fixture_on(&clock).await;
    f.tenancy.cache().set_storage_limits(Arc::new(|plan: &str| (plan == "small").then_some(2_000_000)));
    let before = f.create("plans").await;
    let db = f.tenancy.cache().get_known(&before).await.unwrap();
    db.turn().await.call(|conn| conn.execute_batch("CREATE TABLE ballast (b BLOB)")).unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    f.tenancy.tenants().set_plan(before.id, "small", "test").await.unwrap();
    // A request that read the row before the change: still the new plan's limit.
    f.tenancy.cache().get_known(&before).await.unwrap();
    let refused =
        db.turn().await.call(|conn| conn.execute("INSERT INTO ballast VALUES (randomblob(2500000))", []));
    assert!(matches!(refused, Err(Error::QuotaExceeded(_))), "{refused:?}");
    // Back to the old plan where apply_plan does not reach: the next request's row lifts it.
    clock.advance(std::time::Duration::from_secs(1));
    let after = f.tenancy.control().set_plan(before.id, "free", "another server").await.unwrap();
    f.tenancy.cache().get_known(&after).await.unwrap();
    db.turn()
        .await
        .call(|conn| conn.execute("INSERT INTO ballast VALUES (randomblob(2500000))", []))
        .unwrap();
}

/// Blocking work keeps its turn until it is done, even when the caller stops waiting for it:
/// the next caller of the tenant gets the connection only then (and never waits on its lock).
#[tokio::test]
async fn blocking_work_keeps_its_turn_after_its_caller_gives_up() {
    use futures::FutureExt;
    let f = fixture().await;
    let tenant = f.create("turns").await;
    let db = f.tenancy.db(tenant.id).await.unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let turn = db.turn().await;
    let work = tokio::spawn(async move {
        turn.call_blocking(move |conn| {
            let _ = started.send(());
            released.recv().ok();
            conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get::<_, i64>(0))
        })
        .await
    });
    has_started.await.unwrap();
    // The caller gives up (its task is aborted, dropping its turn): the work goes on.
    work.abort();
    assert!(work.await.unwrap_err().is_cancelled());
    assert!(db.turn().now_or_never().is_none(), "the turn is still the blocking work's");
    release.send(()).unwrap();
    let next = db.turn().await;
    assert_eq!(
        next.call(|conn| conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get::<_, i64>(0))).unwrap(),
        0
    );
    assert_eq!(next.id(), tenant.id);
}
