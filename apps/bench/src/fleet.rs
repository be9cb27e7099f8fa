//! `silo-bench provision`, `silo-bench migrate` and `silo-bench fleet`.

use silo_backups::BackupsExt;
use std::path::Path;
use std::time::Instant;

use silo_tenancy::schema;
use silo_workspace::migrations as tenant_migrations;

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
        .fleet()
        .migrate(tenancy.fleet().targets(None).await?, tenant_migrations(), 2, false, &|_| {})
        .await?;
    println!(
        "fleet check, nothing to migrate, first open of each file ({count} tenants, concurrency 2): {:.2} s, {:.0} tenants/s",
        check.elapsed_ms as f64 / 1000.0,
        count as f64 * 1000.0 / check.elapsed_ms.max(1) as f64
    );
    let v2 = next_release();
    let v3 = schema::extended(
        &v2,
        schema::latest_version(&v2) + 1,
        "bench marker",
        "CREATE TABLE bench_marker_3 (x INTEGER)",
    );
    for (concurrency, migrations) in [(1, &v2), (2, &v3)] {
        let targets = tenancy.fleet().targets(None).await?;
        let summary = tenancy.fleet().migrate(targets, migrations, concurrency, false, &|_| {}).await?;
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

/// The product's migrations and one more: the next release's, numbered after the product's
/// own (a bench that asked for a version the schema already has would migrate nothing).
fn next_release() -> Vec<sqlx::migrate::Migration> {
    let next = schema::latest_version(tenant_migrations()) + 1;
    schema::extended(tenant_migrations(), next, "bench marker", "CREATE TABLE bench_marker_2 (x INTEGER)")
}

/// `silo-bench fleet` options.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Tenants in the fleet.
    #[arg(long, default_value_t = 100_000)]
    tenants: usize,
    /// Tenants written to before the measured backup pass.
    #[arg(long, default_value_t = 100)]
    changed: usize,
    /// Tasks per tenant.
    #[arg(long, default_value_t = 5)]
    tasks: usize,
    /// Seconds of the `wrk` load (after 2 s of warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `wrk` connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The `wrk` script.
    #[arg(long, default_value = "apps/bench/wrk/tenants.lua")]
    wrk: std::path::PathBuf,
}

/// `silo-bench fleet`: one large fleet on the default settings (the cache sized from the
/// machine's limits), measured end to end: provisioning, disk per tenant, the admin console's
/// queries, a migration pass, backup passes, and the server under a Zipf(1.1) `wrk` load.
pub async fn fleet(dir: &Path, args: FleetArgs) -> anyhow::Result<()> {
    use silo_backups::scheduler::Scheduler;
    use silo_tenancy::{TenantQuery, TenantSort};
    use silo_workspace::tasks::{self, NewTask};

    use crate::measure::{Latencies, Sampler, proc_status};

    let tenancy = tenancy(dir, 0).await?;
    let n = args.tenants;
    let capacity = tenancy.cache().stats().capacity;
    println!("fleet of {n} tenants; cache capacity {capacity} (automatic: descriptors and memory)");
    let started = Instant::now();
    let created = create_tenants(&tenancy, "f", n, 4).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!("provisioning: {elapsed:.1} s, {:.0} tenants/s (concurrency 4)", n as f64 / elapsed);
    let disk = disk_use(&dir.join("regions"))?;
    println!(
        "disk per tenant after provisioning: {} (database {:.1} KiB, -wal {:.1} KiB, -shm {:.1} KiB allocated)",
        format_args!("{:.1} KiB", disk.iter().sum::<u64>() as f64 / 1024.0 / n as f64),
        disk[0] as f64 / 1024.0 / n as f64,
        disk[1] as f64 / 1024.0 / n as f64,
        disk[2] as f64 / 1024.0 / n as f64
    );

    let started = Instant::now();
    let (accounts, server_settings) = crate::measure::accounts_and_server(&tenancy)?;
    let fixture = crate::http::Fixture::prepare(&accounts, created, args.tasks).await?;
    println!(
        "setup (untimed): a member, a token and {} tasks in each tenant, {:.0} s",
        args.tasks,
        started.elapsed().as_secs_f64()
    );

    println!("admin console queries over {n} tenants (30 runs each, with the total count):");
    let queries = [
        ("first page", TenantQuery { limit: 50, ..Default::default() }),
        ("deep page (offset n/2)", TenantQuery { limit: 50, offset: (n / 2) as i64, ..Default::default() }),
        (
            "search (part of the slug)",
            TenantQuery { search: Some("f-4242".into()), limit: 50, ..Default::default() },
        ),
        ("newest first", TenantQuery { sort: TenantSort::Newest, limit: 50, ..Default::default() }),
    ];
    for (name, query) in queries {
        let mut samples = Vec::new();
        for _ in 0..30 {
            let started = Instant::now();
            tenancy.control().search(&query).await?;
            samples.push(started.elapsed().as_nanos() as u64);
        }
        println!("  {name:<24} {}", Latencies::new(samples).summary());
    }

    let v2 = next_release();
    let summary =
        tenancy.fleet().migrate(tenancy.fleet().targets(None).await?, &v2, 2, false, &|_| {}).await?;
    anyhow::ensure!(
        summary.failed == 0 && summary.migrated >= n,
        "unexpected migration summary: {summary:?}"
    );
    println!(
        "migration pass (one CREATE TABLE, concurrency 2): {:.1} s, {:.0} tenants/s",
        summary.elapsed_ms as f64 / 1000.0,
        summary.migrated as f64 * 1000.0 / summary.elapsed_ms.max(1) as f64
    );

    let mut scheduler = Scheduler::new(tenancy.backups());
    let started = Instant::now();
    let first = scheduler.pass().await?;
    println!(
        "backup, first pass (whole fleet): {:.1} s, {} backed up, {} failed",
        started.elapsed().as_secs_f64(),
        first.backed_up,
        first.failed.len()
    );
    let started = Instant::now();
    let idle = scheduler.pass().await?;
    println!(
        "backup pass, nothing changed: {:.2} ms ({} backed up)",
        started.elapsed().as_secs_f64() * 1000.0,
        idle.backed_up
    );
    for (slug, _) in fixture.spread.iter().step_by((n / args.changed.max(1)).max(1)).take(args.changed) {
        let tenant = tenancy.resolve(&silo_core::TenantSlug::parse(slug)?).await?;
        let db = tenancy.db(tenant.id).await?;
        tasks::create(
            &db.turn().await,
            &NewTask { project_id: 1, title: "changed".into(), ..Default::default() },
            None,
        )?;
    }
    let started = Instant::now();
    let changed = scheduler.pass().await?;
    println!(
        "backup pass, {} changed: {:.0} ms, {} backed up",
        args.changed,
        started.elapsed().as_secs_f64() * 1000.0,
        changed.backed_up
    );

    let (addr, handle) = crate::measure::serve_in_process(
        silo_billing::Billing::new(accounts.clone(), Default::default(), Default::default()),
        server_settings,
    )?;
    let tokens = fixture.write_tokens(dir)?;
    let wrk = |seconds: u64| {
        let mut command = std::process::Command::new("wrk");
        command
            .args(["-t2", &format!("-c{}", args.connections), &format!("-d{seconds}s")])
            .args(["-s", &args.wrk.to_string_lossy()])
            .arg(format!("http://{addr}"))
            .env("TOKENS", &tokens)
            .env("ZIPF", "1.1");
        command
    };
    let mut warm_up = wrk(2);
    tokio::task::spawn_blocking(move || warm_up.output()).await??;
    let before = tenancy.cache().stats();
    let sampler = Sampler::start();
    let mut command = wrk(args.seconds);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let (fds, threads, rss) = sampler.finish().await;
    anyhow::ensure!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let summary = text.lines().find(|l| l.contains("rps=")).unwrap_or("(no summary)");
    let after = tenancy.cache().stats();
    let opens = after.opens - before.opens;
    println!(
        "serve, Zipf(1.1) over {n} tenants, {} connections: {summary}; hit rate {:.1} %, {opens} opens; peak RSS {} MiB, {fds} fds, {threads} threads (now {} MiB)",
        args.connections,
        100.0 * (after.hits - before.hits) as f64
            / ((after.hits - before.hits) + (after.misses - before.misses)).max(1) as f64,
        rss / 1024,
        proc_status("VmRSS:") / 1024
    );
    handle.stop(true).await;
    tenancy.shutdown().await;
    Ok(())
}

/// Allocated bytes under `root` of tenant databases, `-wal` and `-shm` files.
fn disk_use(root: &Path) -> anyhow::Result<[u64; 3]> {
    use std::os::unix::fs::MetadataExt;
    let mut sums = [0u64; 3];
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = if name.ends_with("-wal") {
                1
            } else if name.ends_with("-shm") {
                2
            } else {
                0
            };
            sums[kind] += meta.blocks() * 512;
        }
    }
    Ok(sums)
}
