//! Fleet migration on real files: bounded concurrency, continue on error, results recorded.

mod common;

use common::fixture;
use silo_core::TenantRef;
use silo_storage::sqlite::{self, OpenMode};
use silo_tenancy::TenantStatus;
use silo_tenancy::schema::{self, MigrationOutcome};

#[tokio::test]
async fn a_failing_tenant_does_not_stop_the_fleet() {
    let f = fixture().await;
    let mut tenants = Vec::new();
    for i in 0..8 {
        tenants.push(f.create(&format!("fleet-{i}")).await);
    }
    f.tenancy.tenants().suspend(&"fleet-7".parse().unwrap(), "test").await.unwrap();
    f.tenancy.tenants().delete(&"fleet-6".parse().unwrap(), "test").await.unwrap();
    // One tenant already has the column the next migration adds.
    let broken = &tenants[3];
    let mut conn =
        sqlite::open(&f.tenancy.tenant_path(broken).unwrap(), Default::default(), OpenMode::Existing)
            .await
            .unwrap();
    sqlx::query("ALTER TABLE tasks ADD COLUMN label TEXT").execute(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();

    let next = schema::extended(
        silo_workspace::migrations(),
        common::latest() + 1,
        "labels",
        "ALTER TABLE tasks ADD COLUMN label TEXT",
    );
    let targets = f.tenancy.fleet().targets(None).await.unwrap();
    assert_eq!(targets.len(), 7, "deleting tenants are not migrated");
    let seen = std::sync::Mutex::new(0);
    let summary =
        f.tenancy.fleet().migrate(targets, &next, 3, false, &|_| *seen.lock().unwrap() += 1).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), 7);
    assert_eq!((summary.migrated, summary.already_current, summary.failed), (6, 0, 1), "{summary:?}");
    assert_eq!(summary.failures[0].slug, "fleet-3");
    assert!(summary.failures[0].error.contains("duplicate column"), "{}", summary.failures[0].error);

    let recorded = f.tenancy.tenant(&TenantRef::Id(broken.id)).await.unwrap();
    assert_eq!(recorded.schema_version, common::latest());
    assert!(recorded.migration_error.is_some());
    let suspended = f.tenancy.tenant(&"fleet-7".parse().unwrap()).await.unwrap();
    assert_eq!((suspended.status, suspended.schema_version), (TenantStatus::Suspended, common::latest() + 1));

    // Second run: everyone else is current; the broken one fails again until fixed.
    let again = f
        .tenancy
        .fleet()
        .migrate(f.tenancy.fleet().targets(None).await.unwrap(), &next, 2, false, &|_| {})
        .await
        .unwrap();
    assert_eq!((again.migrated, again.already_current, again.failed), (0, 6, 1));

    // Fixing the file and migrating that one tenant clears its quarantine.
    let path = f.tenancy.tenant_path(broken).unwrap();
    let mut conn = sqlite::open(&path, Default::default(), OpenMode::Existing).await.unwrap();
    sqlx::query("ALTER TABLE tasks DROP COLUMN label").execute(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let one = f.tenancy.fleet().targets(Some(&"fleet-3".parse().unwrap())).await.unwrap();
    let fixed = f
        .tenancy
        .fleet()
        .migrate(one, &next, 1, false, &|m| {
            assert_eq!(m.outcome, Ok(MigrationOutcome::Migrated(common::latest() + 1)))
        })
        .await
        .unwrap();
    assert_eq!(fixed.migrated, 1);
    let recorded = f.tenancy.tenant(&TenantRef::Id(broken.id)).await.unwrap();
    assert_eq!((recorded.schema_version, recorded.migration_error), (common::latest() + 1, None));
}
