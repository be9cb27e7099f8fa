//! `silo-bench scheduler`: what the backup scheduler costs when nothing changed.
//!
//! `--tenants` tenants are provisioned and backed up once (the first, whole-fleet pass). Then,
//! side by side in one run: the whole-fleet pass with nothing changed (what every pass cost
//! before passes became incremental), the incremental pass with nothing changed, an incremental
//! pass after writes to 10 tenants, and the CPU an idle scheduler loop uses with a 1 s
//! interval (this process does nothing else meanwhile).

use silo_backups::BackupsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use silo_backups::scheduler::Scheduler;
use silo_workspace::{projects, tasks};

use crate::measure::{Latencies, cpu_time, create_tenants, tenancy};

/// `silo-bench scheduler` options.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Tenants in the fleet.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Seconds the idle scheduler loop runs (interval 1 s).
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
}

pub async fn run(dir: &Path, args: SchedulerArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 1024).await?;
    let started = Instant::now();
    let fleet = create_tenants(&tenancy, "s", args.tenants, 4).await?;
    println!("scheduler: {} tenants provisioned in {:.1} s", args.tenants, started.elapsed().as_secs_f64());
    let mut scheduler = Scheduler::new(tenancy.backups());
    let started = Instant::now();
    let first = scheduler.pass().await?;
    println!(
        "  first pass (whole fleet, file times): {:.2} s, {} backed up",
        started.elapsed().as_secs_f64(),
        first.backed_up
    );

    let mut whole = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let run = tenancy.backups().scheduled_pass(false).await?;
        whole.push(started.elapsed().as_nanos() as u64);
        anyhow::ensure!(run.backed_up == 0, "nothing changed, yet {} backed up", run.backed_up);
    }
    let mut incremental = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let run = scheduler.pass().await?;
        incremental.push(started.elapsed().as_nanos() as u64);
        anyhow::ensure!(
            run.backed_up == 0 && run.unchanged == args.tenants,
            "an idle pass did work: {run:?}"
        );
    }
    let (whole, incremental) = (Latencies::new(whole), Latencies::new(incremental));
    println!("  idle pass, whole fleet (as before): {}", whole.summary());
    println!("  idle pass, incremental:             {}", incremental.summary());
    println!(
        "  ratio incremental / whole fleet (p50): {:.5}",
        incremental.percentile_us(50.0) / whole.percentile_us(50.0)
    );

    for tenant in fleet.iter().step_by((args.tenants / 10).max(1)).take(10) {
        let db = tenancy.db(tenant.id).await?;
        projects::create(&db.turn().await, "changed", "", None)?;
        let task = tasks::NewTask { project_id: 1, title: "changed".into(), ..Default::default() };
        tasks::create(&db.turn().await, &task, None)?;
    }
    let started = Instant::now();
    let changed = scheduler.pass().await?;
    println!(
        "  incremental pass after writes to 10 tenants: {:.1} ms, {} backed up, {} unchanged",
        started.elapsed().as_secs_f64() * 1000.0,
        changed.backed_up,
        changed.unchanged
    );

    let cpu_before = cpu_time();
    let wall = Instant::now();
    let looping = tokio::spawn(async move {
        loop {
            scheduler.pass().await.expect("an idle pass");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    looping.abort();
    let used = cpu_time().saturating_sub(cpu_before);
    println!(
        "  idle scheduler loop, interval 1 s, {} s: {:.0} ms CPU = {:.3} % of a core",
        args.idle_seconds,
        used.as_secs_f64() * 1000.0,
        used.as_secs_f64() * 100.0 / wall.elapsed().as_secs_f64()
    );
    tenancy.shutdown().await;
    Ok(())
}
