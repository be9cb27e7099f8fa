//! `silo-bench open`: the cost of a cold open against the bare SQLite floor, side by side.
//!
//! Tenants with `--tasks` tasks each (the HTTP benchmark's shape). For each measured tenant,
//! in one run and on the same files:
//! - **floor**: `rusqlite` alone — open the file, read the first page of tasks (20 rows, the
//!   statement the API runs), close it;
//! - **silo**: `Tenancy::db_for` (the request path's call, the tenant row already known) and
//!   the same read through the repository; the handle is then evicted and closed (not timed:
//!   the close runs off the request path, on the blocking pool).
//!
//! Both are measured with nothing else open, then with `--open-background` other tenants open
//! (SQLite keeps a process-wide list of open files that every open walks). Reported: p50 and
//! p99 of each, and the ratios the issue sets targets for.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use silo_tenancy::workspace::{projects, tasks};
use silo_tenancy::{Tenancy, Tenant};

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
    /// Other tenants kept open during the second measurement.
    #[arg(long, default_value_t = 5_000)]
    open_background: usize,
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

async fn silo_read(tenancy: &Tenancy, tenant: &Tenant) -> anyhow::Result<usize> {
    let db = tenancy.db_for(tenant).await?;
    Ok(tasks::list(&db, &tasks::TaskFilter::default(), 20)?.len())
}

async fn close_all(tenancy: &Tenancy, keep: &[Tenant]) -> anyhow::Result<()> {
    tenancy.cache().clear().await;
    tenancy.cache().wait_all_closed(Duration::from_secs(30)).await;
    for tenant in keep {
        drop(tenancy.db_for(tenant).await?);
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
    let (mut floor, mut silo) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (tenant, path) in measured {
            let path = path.clone();
            let started = Instant::now();
            let rows = tokio::task::spawn_blocking(move || floor_read(&path)).await??;
            floor.push(started.elapsed().as_nanos() as u64);
            anyhow::ensure!(rows == 20, "the floor read {rows} rows");

            let started = Instant::now();
            let rows = silo_read(tenancy, tenant).await?;
            silo.push(started.elapsed().as_nanos() as u64);
            anyhow::ensure!(rows == 20, "silo read {rows} rows");
            // Close this tenant's handle (a lease waits until its connections are closed).
            drop(tenancy.cache().lease(tenant.id).await?);
        }
    }
    anyhow::ensure!(
        tenancy.cache().stats().open_handles as usize >= background.len(),
        "the background stayed open"
    );
    Ok((Latencies::new(floor), Latencies::new(silo)))
}

pub async fn run(dir: &Path, args: OpenArgs) -> anyhow::Result<()> {
    let capacity = (args.tenants + args.open_background + 16) as u64;
    let tenancy = tenancy(dir, capacity).await?;
    let measured = create_tenants(&tenancy, "open", args.tenants, 2).await?;
    for tenant in &measured {
        let db = tenancy.db_for(tenant).await?;
        let project = projects::create(&db, "bench", "", None)?;
        for i in 0..args.tasks {
            let task = tasks::NewTask {
                project_id: project,
                title: format!("task {i} of the benchmark"),
                body: "a body of a few words, as people write them".into(),
                ..Default::default()
            };
            tasks::create(&db, &task, None)?;
        }
    }
    let measured: Vec<(Tenant, std::path::PathBuf)> = measured
        .into_iter()
        .map(|t| Ok::<_, anyhow::Error>((t.clone(), tenancy.tenant_path(&t)?)))
        .collect::<Result<_, _>>()?;
    close_all(&tenancy, &[]).await?;

    let (floor, silo) = measure(&tenancy, &measured, &[], args.rounds).await?;
    report("nothing else open", &floor, &silo);

    let background = create_tenants(&tenancy, "bg", args.open_background, 2).await?;
    close_all(&tenancy, &background).await?;
    let (floor_crowded, silo_crowded) = measure(&tenancy, &measured, &background, 1).await?;
    report(&format!("{} others open", args.open_background), &floor_crowded, &silo_crowded);
    println!(
        "targets: silo p50 / floor p50 (alone) {:.2} (≤ 1.5); silo p99 with {} open / floor p50 (alone) {:.2} (≤ 3)",
        silo.percentile_us(50.0) / floor.percentile_us(50.0),
        args.open_background,
        silo_crowded.percentile_us(99.0) / floor.percentile_us(50.0),
    );
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
