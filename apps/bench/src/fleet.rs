//! `silo-bench provision` and `silo-bench migrate`.

use std::path::Path;
use std::time::Instant;

use silo_tenancy::schema::{self, tenant_migrations};

use crate::measure::{create_tenants, tenancy};

/// Tenants created per second, sequentially and 2 at a time.
pub async fn provision(dir: &Path, count: usize) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 64).await?;
    // The first create builds the template; keep it out of the timing.
    create_tenants(&tenancy, "warmup", 1, 1).await?;
    for concurrency in [1, 2, 4] {
        let started = Instant::now();
        create_tenants(&tenancy, &format!("p{concurrency}"), count, concurrency).await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "provision {count} tenants at concurrency {concurrency}: {elapsed:.2} s, {:.0} tenants/s",
            count as f64 / elapsed
        );
    }
    tenancy.shutdown().await;
    Ok(())
}

/// Fleet migration of `count` tenants with a trivial new migration, at concurrency 1 and 2.
pub async fn migrate(dir: &Path, count: usize) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 64).await?;
    let started = Instant::now();
    create_tenants(&tenancy, "m", count, 4).await?;
    println!("migrate: provisioned {count} tenants in {:.1} s", started.elapsed().as_secs_f64());
    // First pass: nothing to migrate. It is also every file's first open after provisioning
    // (SQLite creates the -wal and -shm files), so the timed runs below compare like with like.
    let check = tenancy
        .migrate_tenants(tenancy.fleet_targets(None).await?, tenant_migrations(), 2, false, &|_| {})
        .await?;
    println!(
        "fleet check, nothing to migrate, first open of each file ({count} tenants, concurrency 2): {:.2} s, {:.0} tenants/s",
        check.elapsed_ms as f64 / 1000.0,
        count as f64 * 1000.0 / check.elapsed_ms.max(1) as f64
    );
    let v2 =
        schema::extended(tenant_migrations(), 2, "bench marker", "CREATE TABLE bench_marker_2 (x INTEGER)");
    let v3 = schema::extended(&v2, 3, "bench marker", "CREATE TABLE bench_marker_3 (x INTEGER)");
    for (concurrency, migrations) in [(1, &v2), (2, &v3)] {
        let targets = tenancy.fleet_targets(None).await?;
        let summary = tenancy.migrate_tenants(targets, migrations, concurrency, false, &|_| {}).await?;
        anyhow::ensure!(summary.failed == 0 && summary.migrated == count, "unexpected summary {summary:?}");
        println!(
            "fleet migration of {count} tenants at concurrency {concurrency}: {:.2} s, {:.0} tenants/s",
            summary.elapsed_ms as f64 / 1000.0,
            count as f64 * 1000.0 / summary.elapsed_ms as f64
        );
    }
    tenancy.shutdown().await;
    Ok(())
}
