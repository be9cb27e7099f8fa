//! `silo-bench open`: the cost of a cold open against the bare SQLite floor, side by side.
//!
//! Tenants with `--tasks` tasks each (the HTTP benchmark's shape). For each measured tenant,
//! in one run and on the same files:
//! - **floor**: `rusqlite` alone on SQLite's default VFS — open the file, read the first page
//!   of tasks (20 rows, the statement the API runs), close it — on a copy of the tenant's file,
//!   so neither path disturbs the other's side files;
//! - **silo**: `Tenancy::db_for` (the request path's call, the tenant row already known) and
//!   the same read through the repository; the handle is then evicted and closed (not timed:
//!   the close runs off the request path, on the blocking pool).
//!
//! Both are measured with nothing else open, then with each of `--open-background` other
//! tenants held open by Silo (the default VFS keeps a process-wide list of open files that
//! every open walks; Silo's files open on a VFS without it). Reported: p50 and p99 of each,
//! and the ratio the issue sets its target for (silo p50 / floor p50 ≤ 1.2 at every level).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use silo_tenancy::{Tenancy, Tenant, TenantDb};
use silo_workspace::{projects, tasks};

use crate::measure::{Latencies, create_tenants, tenancy};

/// `silo-bench open` options.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Tenants whose opens are measured.
    #[arg(long, default_value_t = 400)]
    tenants: usize,
    /// Tasks in each tenant.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// How many other tenants are held open in each later measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 9_000])]
    open_background: Vec<usize>,
    /// Rounds over the measured tenants (samples = tenants × rounds).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// The first page of tasks, as the API reads it.
const PAGE: &str = "SELECT t.id, t.project_id, t.title, t.body, t.status, t.assignee_id, m.display_name,
    t.due_date, t.created_at, t.updated_at
    FROM tasks t LEFT JOIN members m ON m.id = t.assignee_id WHERE 1 ORDER BY t.id DESC LIMIT ?";

fn floor_read(path: &Path) -> anyhow::Result<usize> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let rows = {
        let mut statement = conn.prepare(PAGE)?;
        let mut rows = statement.query([20])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let _: String = row.get(2)?;
            n += 1;
        }
        n
    };
    conn.close().map_err(|(_, e)| e)?;
    Ok(rows)
}

/// Silo's open and read; returns the rows and the nanoseconds `db_for` took.
async fn silo_read(tenancy: &Tenancy, tenant: &Tenant) -> anyhow::Result<(usize, u64)> {
    let started = Instant::now();
    let db = tenancy.db_for(tenant).await?;
    let opened = started.elapsed().as_nanos() as u64;
    Ok((tasks::list(&db.turn().await, &tasks::TaskFilter::default(), 20)?.len(), opened))
}

/// Closes every handle, then opens `keep` and returns their handles: held here, they stay open
/// whatever the cache's capacity (which the descriptor budget may set below their number).
async fn close_all(tenancy: &Tenancy, keep: &[Tenant]) -> anyhow::Result<Vec<Arc<TenantDb>>> {
    tenancy.cache().clear().await;
    tenancy.cache().wait_all_closed(Duration::from_secs(30)).await;
    let mut held = Vec::with_capacity(keep.len());
    for tenant in keep {
        held.push(tenancy.db_for(tenant).await?);
    }
    Ok(held)
}

/// Where the time of one Silo open goes, step by step on one thread (its own file, closed
/// before): open + Silo's connection settings, the migration check, the first page, the close.
fn breakdown(paths: &[std::path::PathBuf], tuning: silo_storage::SqliteTuning) -> anyhow::Result<()> {
    use silo_storage::sqlite::{OpenMode, open_sync};
    let (mut open, mut settings, mut check, mut read, mut close) = (vec![], vec![], vec![], vec![], vec![]);
    let migrations = silo_workspace::migrations();
    for path in paths {
        let started = Instant::now();
        let bare = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        open.push(started.elapsed().as_nanos() as u64);
        drop(bare);
        let started = Instant::now();
        let mut conn = open_sync(path, tuning, OpenMode::Existing)?;
        settings.push(started.elapsed().as_nanos() as u64);
        let started = Instant::now();
        silo_tenancy::schema::migrate(&mut conn, migrations, &silo_core::Timestamp::now())?;
        check.push(started.elapsed().as_nanos() as u64);
        let started = Instant::now();
        {
            let mut statement = conn.prepare_cached(PAGE)?;
            let mut rows = statement.query([20])?;
            while rows.next()?.is_some() {}
        }
        read.push(started.elapsed().as_nanos() as u64);
        let started = Instant::now();
        conn.close()?;
        close.push(started.elapsed().as_nanos() as u64);
    }
    println!("  breakdown of a Silo open, one thread (p50):");
    for (name, samples) in [
        ("bare open (then closed, not timed)", open),
        ("open with Silo's settings", settings),
        ("migration check (user_version)", check),
        ("first page (schema load + 20 rows)", read),
        ("close (WAL kept)", close),
    ] {
        println!("    {name:<38} {:>8.1} µs", Latencies::new(samples).percentile_us(50.0));
    }
    Ok(())
}

/// One measurement of floor and Silo over `measured`, interleaved tenant by tenant.
async fn measure(
    tenancy: &Tenancy,
    measured: &[(Tenant, std::path::PathBuf)],
    background: &[Tenant],
    rounds: usize,
) -> anyhow::Result<(Latencies, Latencies)> {
    let (mut floor, mut silo, mut opens) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (tenant, path) in measured {
            let path = floor_copy(path);
            let started = Instant::now();
            let rows = tokio::task::spawn_blocking(move || floor_read(&path)).await??;
            floor.push(started.elapsed().as_nanos() as u64);
            anyhow::ensure!(rows == 20, "the floor read {rows} rows");

            let started = Instant::now();
            let (rows, opened) = silo_read(tenancy, tenant).await?;
            silo.push(started.elapsed().as_nanos() as u64);
            opens.push(opened);
            anyhow::ensure!(rows == 20, "silo read {rows} rows");
            // Close this tenant's handle (a lease waits until its connection is closed).
            drop(tenancy.cache().lease(tenant.id).await?);
        }
    }
    anyhow::ensure!(
        tenancy.cache().stats().open_handles as usize >= background.len(),
        "the background stayed open"
    );
    println!("  (of silo: db_for alone {})", Latencies::new(opens).summary());
    Ok((Latencies::new(floor), Latencies::new(silo)))
}

/// The floor's copy of a tenant file.
fn floor_copy(path: &Path) -> std::path::PathBuf {
    path.with_extension("floor.db")
}

pub async fn run(dir: &Path, args: OpenArgs) -> anyhow::Result<()> {
    let most = args.open_background.iter().copied().max().unwrap_or(0);
    let capacity = (args.tenants + most + 16) as u64;
    let tenancy = tenancy(dir, capacity).await?;
    let measured = create_tenants(&tenancy, "open", args.tenants, 2).await?;
    for tenant in &measured {
        let db = tenancy.db_for(tenant).await?;
        let project = projects::create(&db.turn().await, "bench", "", None)?;
        for i in 0..args.tasks {
            let task = tasks::NewTask {
                project_id: project,
                title: format!("task {i} of the benchmark"),
                body: "a body of a few words, as people write them".into(),
                ..Default::default()
            };
            tasks::create(&db.turn().await, &task, None)?;
        }
    }
    let measured: Vec<(Tenant, std::path::PathBuf)> = measured
        .into_iter()
        .map(|t| Ok::<_, anyhow::Error>((t.clone(), tenancy.tenant_path(&t)?)))
        .collect::<Result<_, _>>()?;
    close_all(&tenancy, &[]).await?;
    for (_, path) in &measured {
        // Closed with its WAL checkpointed: the database file alone is the whole tenant.
        std::fs::copy(path, floor_copy(path))?;
    }

    let (floor, silo) = measure(&tenancy, &measured, &[], args.rounds).await?;
    report("nothing else open", &floor, &silo);
    let paths: Vec<_> = measured.iter().map(|(_, p)| p.clone()).collect();
    let tuning = tenancy.settings().tenant_tuning();
    tokio::task::spawn_blocking(move || breakdown(&paths, tuning)).await??;

    let mut ratios = vec![(0, silo.percentile_us(50.0) / floor.percentile_us(50.0))];
    let background = create_tenants(&tenancy, "bg", most, 2).await?;
    for &open in &args.open_background {
        let _held = close_all(&tenancy, &background[..open]).await?;
        let (floor, silo) = measure(&tenancy, &measured, &background[..open], 1).await?;
        report(&format!("{open} others open"), &floor, &silo);
        ratios.push((open, silo.percentile_us(50.0) / floor.percentile_us(50.0)));
    }
    let listed: Vec<String> = ratios.iter().map(|(open, r)| format!("{open} open: {r:.2}")).collect();
    println!("target: silo p50 / floor p50 ≤ 1.2 at every level — {}", listed.join("; "));
    tenancy.shutdown().await;
    Ok(())
}

fn report(case: &str, floor: &Latencies, silo: &Latencies) {
    println!("cold open + first page of tasks (20 rows), {case}:");
    println!("  floor (rusqlite open, read, close): {}", floor.summary());
    println!("  silo  (db_for + tasks::list):       {}", silo.summary());
    println!(
        "  ratio silo/floor: p50 {:.2}, p99 {:.2}",
        silo.percentile_us(50.0) / floor.percentile_us(50.0),
        silo.percentile_us(99.0) / floor.percentile_us(99.0)
    );
}
