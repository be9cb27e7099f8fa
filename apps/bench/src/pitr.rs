//! `silo-bench pitr`: what replaying a chain costs a restore.
//!
//! One tenant grown to `--mb` MB (tasks with 4 KB bodies), backed up; then `--segments`
//! shipper passes, each after one commit (an hour of a tenant writing once a second is 3,600
//! segments). Side by side: restoring the snapshot alone (as a new tenant) and restoring to
//! the last moment (the snapshot and every segment replayed), each `--runs` times (the median).
//! The target: the second within 2× the first.

use silo_backups::BackupsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::Rng;
use silo_backups::BackupKind;
use silo_backups::BackupStore;
use silo_core::{TenantRef, Timestamp};
use silo_storage::crypto::MasterKey;
use silo_storage::objects::LocalStore;
use silo_tenancy::CreateTenant;
use silo_workspace::{projects, tasks};

use crate::measure::tenancy;

/// `silo-bench pitr` options.
#[derive(Debug, Args)]
pub struct PitrArgs {
    /// Size the tenant is grown to, MB.
    #[arg(long, default_value_t = 100)]
    mb: usize,
    /// Segments after the snapshot (one commit each).
    #[arg(long, default_value_t = 3600)]
    segments: usize,
    /// Restores of each kind (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub async fn run(dir: &Path, args: PitrArgs) -> anyhow::Result<()> {
    let fleet = tenancy(dir, 0).await?;
    let store = Arc::new(LocalStore::new(dir.join("objects")));
    fleet.backups().install_store(BackupStore::with_store(store, MasterKey::generate()))?;
    fleet.backups().logs().enable();
    let tenant = fleet.tenants().create(CreateTenant::with_slug("big"), "bench").await?;
    let db = fleet.db(tenant.id).await?;
    let project = projects::create(&db.turn().await, "bench", "", None)?;
    // Bodies of ~2 KB of words from a 5,000-word vocabulary (the search index grows as it
    // would), inserted 1,000 at a time until the file reaches the size.
    let target = (args.mb * 1_000_000) as i64;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let mut i = 0i64;
    loop {
        let bodies: Vec<String> = (0..1000)
            .map(|_| {
                (0..300).map(|_| format!("w{}", rng.random_range(0..5000))).collect::<Vec<_>>().join(" ")
            })
            .collect();
        let first = i;
        let size = db.turn().await.call(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx
                    .prepare("INSERT INTO tasks (project_id, title, body) VALUES (?1, 'grown ' || ?2, ?3)")?;
                for (n, body) in bodies.iter().enumerate() {
                    insert.execute(rusqlite::params![project, first + n as i64, body])?;
                }
            }
            tx.commit()?;
            conn.query_row(
                "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
                [],
                |r| r.get::<_, i64>(0),
            )
        })?;
        i += 1000;
        if size >= target {
            break;
        }
    }
    drop(db);
    let reference = TenantRef::Id(tenant.id);
    let snapshot = fleet.backups().create(&reference, BackupKind::Manual, "bench").await?;
    let built = Instant::now();
    for i in 0..args.segments {
        let db = fleet.db(tenant.id).await?;
        let new = tasks::NewTask { project_id: project, title: format!("after {i}"), ..Default::default() };
        tasks::create(&db.turn().await, &new, None)?;
        drop(db);
        let run = fleet.backups().ship_changes().await;
        anyhow::ensure!(run.failed.is_empty(), "shipping failed: {:?}", run.failed);
    }
    println!(
        "pitr: tenant of {:.0} MB (snapshot stored {:.1} MB), {} segments of one commit each shipped in {:.1} s",
        snapshot.db_size as f64 / 1e6,
        snapshot.size as f64 / 1e6,
        args.segments,
        built.elapsed().as_secs_f64()
    );
    let (mut alone, mut replayed) = (Vec::new(), Vec::new());
    let mut commits = 0;
    for run in 0..args.runs {
        let started = Instant::now();
        fleet
            .backups()
            .restore(&reference, Some(&snapshot.id), Some(&format!("alone-{run}")), "bench")
            .await?;
        alone.push(started.elapsed());
        let started = Instant::now();
        let restored = fleet
            .backups()
            .restore_to(&reference, &Timestamp::now(), Some(&format!("at-{run}")), "bench")
            .await?;
        replayed.push(started.elapsed());
        commits = restored.commits_replayed;
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (alone, replayed) = (median(alone), median(replayed));
    println!(
        "pitr: restore of the snapshot alone {:.2} s; to the last moment ({commits} commits from {} segments replayed) {:.2} s: {:.2}× (target ≤ 2×)",
        alone.as_secs_f64(),
        args.segments,
        replayed.as_secs_f64(),
        replayed.as_secs_f64() / alone.as_secs_f64()
    );
    fleet.shutdown().await;
    Ok(())
}
