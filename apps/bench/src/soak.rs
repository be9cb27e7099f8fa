//! `silo-bench soak`: does memory stay flat? The real server over `--tenants` tenants (default
//! 10,000) on the default cache settings, for `--minutes` (default 30): `wrk` reads with the
//! tenants script at Zipf(1.1), an in-process writer adds tasks to random tenants, and the
//! backup scheduler runs every `--backup-interval` (default 60 s) over a local store.
//!
//! Every `--sample-seconds` it prints the process's RSS, descriptors and threads beside where
//! the memory is: SQLite's heap (`sqlite3_memory_used`: page caches, schemas, statements),
//! the C heap as glibc sees it (`mallinfo2`: bytes in use, and bytes free but still held —
//! fragmentation), and the handle cache (cached handles, opens so far). At the end: the
//! server's stated worst case, and the growth of each figure over the second half of the run
//! (after warm-up), which should be near zero.

use silo_backups::BackupsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use rand::{Rng, SeedableRng};
use silo_core::TenantSlug;
use silo_tenancy::{Settings, Tenancy};
use silo_workspace::tasks::{self, NewTask};

use crate::http::Fixture;
use crate::measure::proc_status;

/// `silo-bench soak` options.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Tenants read and written.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Tasks per tenant at the start.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// Length of the run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample_seconds: u64,
    /// `wrk` connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Tasks written per second (to uniformly chosen tenants).
    #[arg(long, default_value_t = 20)]
    writes_per_second: u64,
    /// The backup scheduler's interval.
    #[arg(long, default_value = "60s")]
    backup_interval: String,
    /// The `wrk` script.
    #[arg(long, default_value = "apps/bench/wrk/tenants.lua")]
    wrk: std::path::PathBuf,
}

/// One sample.
#[derive(Clone, Copy, Debug)]
struct Sample {
    seconds: u64,
    rss_mib: f64,
    fds: u64,
    threads: u64,
    sqlite_mib: f64,
    heap_used_mib: f64,
    heap_free_mib: f64,
    cached: u64,
    opens: u64,
}

// The one `unsafe` of the benches: two FFI reads of counters, no pointers involved.
#[allow(unsafe_code)]
fn sample(tenancy: &Tenancy, started: Instant) -> Sample {
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    // SAFETY: both calls only read allocator/SQLite counters.
    let (sqlite, heap) = unsafe { (rusqlite::ffi::sqlite3_memory_used(), libc::mallinfo2()) };
    let stats = tenancy.cache().stats();
    Sample {
        seconds: started.elapsed().as_secs(),
        rss_mib: proc_status("VmRSS:") as f64 / 1024.0,
        fds: silo_tenancy::limits::open_fds(),
        threads: proc_status("Threads:"),
        sqlite_mib: mib(sqlite as f64),
        heap_used_mib: mib((heap.uordblks + heap.hblkhd) as f64),
        heap_free_mib: mib(heap.fordblks as f64),
        cached: stats.cached_handles,
        opens: stats.opens,
    }
}

pub async fn run(dir: &Path, args: SoakArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(None)?;
    settings.data_dir = dir.to_owned();
    settings.backup.schedule = true;
    settings.backup.interval = args.backup_interval.clone();
    let interval = settings.backup.interval()?;
    let tenancy = silo_web::schema::open(settings).await?;
    let stats = tenancy.cache().stats();
    let cache = &tenancy.settings().cache;
    let worst_case = silo_tenancy::limits::worst_case_memory(stats.capacity, cache.page_cache_kib) as f64
        / (1024.0 * 1024.0);
    let setup = Instant::now();
    let (accounts, server_settings) = crate::measure::accounts_and_server(&tenancy)?;
    let fixture = Fixture::build(&accounts, args.tenants, args.tasks).await?;
    println!("setup: {} tenants × {} tasks in {:.0?}", args.tenants + 2, args.tasks, setup.elapsed());
    println!(
        "cache capacity {}, page cache {} KiB: stated worst case of the cache {worst_case:.0} MiB",
        stats.capacity, cache.page_cache_kib
    );

    let (addr, handle) = crate::measure::serve_in_process(
        silo_billing::Billing::new(accounts.clone(), Default::default(), Default::default()),
        server_settings,
    )?;
    tenancy.backups().store().await?;
    let scheduler = tokio::spawn(tenancy.clone().backups().run_scheduler(interval, std::future::pending()));

    let tokens = fixture.write_tokens(dir)?;
    let mut wrk = std::process::Command::new("wrk");
    wrk.args(["-t2", &format!("-c{}", args.connections), &format!("-d{}s", args.minutes * 60)])
        .args(["-s", &args.wrk.to_string_lossy()])
        .arg(format!("http://{addr}"))
        .env("TOKENS", &tokens)
        .env("ZIPF", "1.1");
    let reads = tokio::task::spawn_blocking(move || wrk.output());

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.minutes * 60);
    let writer =
        tokio::spawn(write(tenancy.clone(), fixture.spread.clone(), args.writes_per_second, deadline));
    println!("  min  RSS MiB  fds  threads  SQLite MiB  heap used MiB  heap free MiB  cached  opens");
    let mut samples = Vec::new();
    let (mut last_pass, mut backed_up, mut passes) = (None, 0, 0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(args.sample_seconds).min(deadline - Instant::now())).await;
        let status = tenancy.backups().scheduler_status();
        if status.last_pass_at.is_some() && status.last_pass_at != last_pass {
            (last_pass, backed_up, passes) = (status.last_pass_at, backed_up + status.backed_up, passes + 1);
        }
        let s = sample(&tenancy, started);
        println!(
            "{:>5.1} {:>8.0} {:>5} {:>7} {:>11.0} {:>14.0} {:>14.0} {:>7} {:>6}",
            s.seconds as f64 / 60.0,
            s.rss_mib,
            s.fds,
            s.threads,
            s.sqlite_mib,
            s.heap_used_mib,
            s.heap_free_mib,
            s.cached,
            s.opens
        );
        samples.push(s);
    }
    let output = reads.await??;
    anyhow::ensure!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary = String::from_utf8_lossy(&output.stdout);
    let summary = summary.lines().find(|l| l.contains("rps=")).unwrap_or("(no summary)");
    let (written, failed) = writer.await?;
    println!("reads (wrk, Zipf 1.1): {summary}");
    println!("writes: {written} tasks written, {failed} failed");
    println!("backup passes seen: {passes} (sampled), backing up {backed_up} tenants between them");

    // Growth over the second half, as a line fitted through the samples there (per 10 min).
    let half: Vec<Sample> = samples.iter().copied().skip(samples.len() / 2).collect();
    if half.len() >= 2 {
        let slope = |f: fn(&Sample) -> f64| {
            let n = half.len() as f64;
            let mx = half.iter().map(|s| s.seconds as f64).sum::<f64>() / n;
            let my = half.iter().map(f).sum::<f64>() / n;
            let cov: f64 = half.iter().map(|s| (s.seconds as f64 - mx) * (f(s) - my)).sum();
            let var: f64 = half.iter().map(|s| (s.seconds as f64 - mx).powi(2)).sum();
            cov / var.max(1.0) * 600.0
        };
        println!(
            "second half, growth per 10 min: RSS {:+.1} MiB, fds {:+.1}, SQLite heap {:+.1} MiB, C heap in use {:+.1} MiB, held free {:+.1} MiB",
            slope(|s| s.rss_mib),
            slope(|s| s.fds as f64),
            slope(|s| s.sqlite_mib),
            slope(|s| s.heap_used_mib),
            slope(|s| s.heap_free_mib)
        );
        let peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
        println!("peak RSS {peak:.0} MiB; the cache's stated worst case {worst_case:.0} MiB");
    }
    scheduler.abort();
    handle.stop(true).await;
    tenancy.shutdown().await;
    Ok(())
}

/// Adds tasks to uniformly chosen tenants at `per_second` until `deadline`; (written, failed).
async fn write(
    tenancy: Tenancy,
    spread: std::sync::Arc<Vec<(String, String)>>,
    per_second: u64,
    deadline: Instant,
) -> (u64, u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / per_second.max(1)));
    let (mut written, mut failed) = (0, 0);
    while Instant::now() < deadline {
        every.tick().await;
        let (slug, _) = &spread[rng.random_range(0..spread.len())];
        let result = async {
            let tenant = tenancy.resolve(&TenantSlug::parse(slug)?).await?;
            let db = tenancy.db(tenant.id).await?;
            let task = NewTask { project_id: 1, title: "soak".into(), ..Default::default() };
            tasks::create(&db.turn().await, &task, None)?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => written += 1,
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("soak write failed: {e:#}");
                }
            }
        }
    }
    (written, failed)
}
