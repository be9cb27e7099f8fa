//! `silo-bench cache`: the handle cache and the per-query cost of the driver.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};
use silo_core::TenantId;
use silo_storage::sqlite::{self, OpenMode};
use silo_tenancy::Tenancy;
use silo_workspace::{projects, tasks};
use sqlx::sqlite::SqlitePoolOptions;

use crate::measure::{Latencies, Sampler, create_tenants, tenancy, timed};

/// `silo-bench cache` options (defaults are the figures).
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Tenants of the Zipf workload.
    #[arg(long, default_value_t = 100_000)]
    zipf_tenants: usize,
    /// Seconds the Zipf workload runs.
    #[arg(long, default_value_t = 20)]
    zipf_seconds: u64,
    /// Seconds the churn workload runs.
    #[arg(long, default_value_t = 60)]
    churn_seconds: u64,
    /// Other tenants kept open while cold opens are measured.
    #[arg(long, default_value_t = 5_000)]
    open_background: usize,
    /// Only these parts (warm, read, cold, zipf, churn); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl CacheArgs {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// A task row as sqlx decodes it (the statement and columns `tasks::get` reads).
type TaskRow =
    (i64, i64, String, String, String, Option<i64>, Option<String>, Option<String>, String, String);

const READ_SQL: &str = tasks::GET_SQL;

pub async fn run(dir: &Path, args: CacheArgs) -> anyhow::Result<()> {
    if args.wants("warm") || args.wants("read") {
        warm(&dir.join("warm"), &args).await?;
    }
    if args.wants("cold") {
        cold(&dir.join("cold"), args.open_background).await?;
    }
    if args.wants("zipf") {
        zipf(&dir.join("zipf"), args.zipf_tenants, Duration::from_secs(args.zipf_seconds)).await?;
    }
    if args.wants("churn") {
        churn(&dir.join("churn"), Duration::from_secs(args.churn_seconds)).await?;
    }
    Ok(())
}

/// Warm `get` and warm point reads through TenantDb, a bare connection and a one-connection pool.
async fn warm(dir: &Path, args: &CacheArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 1024).await?;
    let tenant = create_tenants(&tenancy, "warm", 1, 1).await?.remove(0);
    let db = tenancy.db(tenant.id).await?;
    let project = projects::create(&db.turn().await, "bench", "", None)?;
    for i in 0..1000 {
        tasks::create(
            &db.turn().await,
            &tasks::NewTask {
                project_id: project,
                title: format!("task {i}"),
                body: "a body of some length to read back".into(),
                ..Default::default()
            },
            None,
        )?;
    }

    if args.wants("warm") {
        const GETS: u32 = 1_000_000;
        let started = Instant::now();
        for _ in 0..GETS {
            std::hint::black_box(tenancy.db(tenant.id).await?);
        }
        let per_get = started.elapsed().as_nanos() as f64 / f64::from(GETS);
        println!("warm get (cache hit):                {per_get:.0} ns/op  ({GETS} ops)");
    }
    if !args.wants("read") {
        return Ok(());
    }
    const READS: usize = 20_000;
    let ids: Vec<i64> = (0..READS).map(|i| (i as i64 * 7919) % 1000 + 1).collect();

    let mut samples = Vec::with_capacity(READS);
    for id in &ids {
        let (task, ns) = timed(async { tasks::get(&db.turn().await, *id) }).await;
        assert!(task?.is_some());
        samples.push(ns);
    }
    let through_db = Latencies::new(samples);

    let mut samples = Vec::with_capacity(READS);
    for id in &ids {
        let (task, ns) = timed(async {
            let db = tenancy.db(tenant.id).await?;
            tasks::get(&db.turn().await, *id)
        })
        .await;
        assert!(task?.is_some());
        samples.push(ns);
    }
    let get_and_read = Latencies::new(samples);

    let path = tenancy.tenant_path(&tenant)?;
    let mut conn = sqlite::open(&path, tenancy.settings().tenant_tuning(), OpenMode::Existing).await?;
    let mut samples = Vec::with_capacity(READS);
    for id in &ids {
        let (task, ns) =
            timed(async { sqlx::query_as::<_, TaskRow>(READ_SQL).bind(id).fetch_optional(&mut conn).await })
                .await;
        assert!(task?.is_some());
        samples.push(ns);
    }
    let bare = Latencies::new(samples);

    let options = sqlite::connect_options(&path, tenancy.settings().tenant_tuning(), OpenMode::Existing);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let mut samples = Vec::with_capacity(READS);
    for id in &ids {
        let (task, ns) =
            timed(async { sqlx::query_as::<_, TaskRow>(READ_SQL).bind(id).fetch_optional(&pool).await })
                .await;
        assert!(task?.is_some());
        samples.push(ns);
    }
    let pooled = Latencies::new(samples);
    pool.close().await;

    println!("point read, TenantDb (held handle):  {}", through_db.summary());
    println!("point read, get + TenantDb:          {}", get_and_read.summary());
    println!("point read, sqlx SqliteConnection:   {}", bare.summary());
    println!("point read, sqlx SqlitePool (1):     {}", pooled.summary());
    println!(
        "  ratio p50: TenantDb / sqlx connection = {:.3}, sqlx pool / sqlx connection = {:.2}",
        through_db.percentile_us(50.0) / bare.percentile_us(50.0),
        pooled.percentile_us(50.0) / bare.percentile_us(50.0)
    );
    drop(db);
    tenancy.shutdown().await;
    Ok(())
}

/// Cold open + migration check: the first open after provisioning, and re-opens after
/// eviction with no other tenant open and with `background` open.
async fn cold(dir: &Path, background: usize) -> anyhow::Result<()> {
    const MEASURED: usize = 500;
    let tenancy = tenancy(dir, (background + MEASURED + 16) as u64).await?;
    let measured = create_tenants(&tenancy, "cold", MEASURED, 2).await?;
    let others = create_tenants(&tenancy, "bg", background, 2).await?;
    let close_all = || async {
        tenancy.cache().clear().await;
        tenancy.cache().wait_all_closed(Duration::from_secs(10)).await;
    };

    let mut first = Vec::with_capacity(MEASURED);
    let mut lookups = Vec::with_capacity(MEASURED);
    for tenant in &measured {
        let (row, ns) = timed(tenancy.control().tenant_by_id(tenant.id)).await;
        row?;
        lookups.push(ns);
        let (db, ns) = timed(tenancy.db(tenant.id)).await;
        drop(db?);
        first.push(ns);
        close_all().await;
    }
    let (first, lookups) = (Latencies::new(first), Latencies::new(lookups));

    let mut samples = Vec::with_capacity(MEASURED);
    for tenant in &measured {
        let (db, ns) = timed(tenancy.db(tenant.id)).await;
        drop(db?);
        samples.push(ns);
        close_all().await;
    }
    let alone = Latencies::new(samples);

    for tenant in &others {
        tenancy.db(tenant.id).await?;
    }
    let fds_before = silo_tenancy::limits::open_fds();
    let mut samples = Vec::with_capacity(MEASURED);
    for tenant in &measured {
        let (db, ns) = timed(tenancy.db(tenant.id)).await;
        drop(db?);
        samples.push(ns);
    }
    let crowded = Latencies::new(samples);
    let stats = tenancy.cache().stats();
    println!("first open after provisioning:       {}", first.summary());
    println!("  of which a control-plane lookup:   {}", lookups.summary());
    println!("cold re-open + migration check, 0 open:     {}", alone.summary());
    println!("cold re-open, {background} others open:        {}", crowded.summary());
    println!(
        "  open handles {}  process fds {} (before the last {MEASURED}: {fds_before})  => {:.2} fds per handle",
        stats.open_handles,
        stats.process_fds,
        stats.process_fds as f64 / stats.open_handles.max(1) as f64
    );
    tenancy.shutdown().await;
    Ok(())
}

/// Zipf(1.1) over `count` tenants, capacity 1,024, 64 tasks doing get + point read.
async fn zipf(dir: &Path, count: usize, duration: Duration) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 1024).await?;
    let started = Instant::now();
    let tenants = create_tenants(&tenancy, "z", count, 4).await?;
    println!(
        "zipf: provisioned {count} tenants in {:.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64()
    );
    let ids: Arc<Vec<TenantId>> = Arc::new(tenants.iter().map(|t| t.id).collect());
    drop(tenants);
    let before = tenancy.cache().stats();
    let sampler = Sampler::start();
    let (ops, errors) =
        run_workers(&tenancy, &ids, 64, duration, Pick::Zipf, |db, _| tasks::get(db, 1).map(|_| ())).await;
    let (peak_fds, peak_threads, peak_rss) = sampler.finish().await;
    let after = tenancy.cache().stats();
    let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
    println!(
        "zipf(1.1) {count} tenants, capacity 1024, 64 tasks, {}s: {:.0} ops/s, hit rate {:.1}%, errors {errors}",
        duration.as_secs(),
        ops as f64 / duration.as_secs_f64(),
        100.0 * hits as f64 / (hits + misses).max(1) as f64
    );
    println!(
        "  peak fds {peak_fds}, peak threads {peak_threads}, peak RSS {:.0} MiB, opens {}, evictions {}",
        peak_rss as f64 / 1024.0,
        after.opens - before.opens,
        after.evictions - before.evictions
    );
    tenancy.shutdown().await;
    Ok(())
}

/// Capacity 16, 500 tenants, 64 tasks writing and reading: every operation must succeed.
async fn churn(dir: &Path, duration: Duration) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 16).await?;
    let tenants = create_tenants(&tenancy, "churn", 500, 2).await?;
    for tenant in &tenants {
        let db = tenancy.db(tenant.id).await?;
        projects::create(&db.turn().await, "churn", "", None)?;
    }
    let ids: Arc<Vec<TenantId>> = Arc::new(tenants.iter().map(|t| t.id).collect());
    let before = tenancy.cache().stats();
    let sampler = Sampler::start();
    // Alternate a write (a new task) and a read.
    let (ops, errors) = run_workers(&tenancy, &ids, 64, duration, Pick::Uniform, |db, n| {
        if n.is_multiple_of(2) {
            tasks::create(
                db,
                &tasks::NewTask { project_id: 1, title: "churn".into(), ..Default::default() },
                None,
            )
            .map(|_| ())
        } else {
            tasks::count_tasks(db).map(|_| ())
        }
    })
    .await;
    let (peak_fds, _, _) = sampler.finish().await;
    let after = tenancy.cache().stats();
    println!(
        "churn: capacity 16, 500 tenants, 64 tasks, {}s: {ops} ops ({:.0}/s), errors {errors}, evictions {}, peak fds {peak_fds}",
        duration.as_secs(),
        ops as f64 / duration.as_secs_f64(),
        after.evictions - before.evictions
    );
    tenancy.shutdown().await;
    anyhow::ensure!(errors == 0, "churn produced {errors} errors");
    Ok(())
}

/// How workers pick the tenant of their next operation.
#[derive(Clone, Copy)]
enum Pick {
    /// Zipf(1.1): a few hot tenants, a long tail.
    Zipf,
    /// Every tenant alike.
    Uniform,
}

/// Runs `workers` tasks for `duration`; each picks a tenant, gets its handle and runs `op`
/// (given the handle and the worker's operation count). Returns (successes, errors).
async fn run_workers<F>(
    tenancy: &Tenancy,
    ids: &Arc<Vec<TenantId>>,
    workers: usize,
    duration: Duration,
    pick: Pick,
    op: F,
) -> (u64, u64)
where
    F: Fn(&silo_tenancy::Turn, u64) -> silo_workspace::Result<()> + Send + Sync + Copy + 'static,
{
    let (ops, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (tenancy, ids, ops, errors) = (tenancy.clone(), ids.clone(), ops.clone(), errors.clone());
            tokio::spawn(async move {
                let zipf = Zipf::new(ids.len() as f64, 1.1).expect("valid zipf");
                let mut rng = SmallRng::seed_from_u64(w as u64);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let index = match pick {
                        Pick::Zipf => zipf.sample(&mut rng) as usize - 1,
                        Pick::Uniform => rand::Rng::random_range(&mut rng, 0..ids.len()),
                    };
                    n += 1;
                    let result = match tenancy.db(ids[index]).await {
                        Ok(db) => op(&db.turn().await, n),
                        Err(e) => Err(e.into()),
                    };
                    match result {
                        Ok(()) => ops.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("  error: {e}");
                            }
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    (ops.load(Ordering::Relaxed), errors.load(Ordering::Relaxed))
}
