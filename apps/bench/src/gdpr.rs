//! `silo-bench gdpr`: what the durable jobs and exports cost.
//!
//! - Jobs: enqueue → done latency of an empty job on an idle worker pool (p50/p99), the pool
//!   running as in `silo serve`.
//! - Export: a tenant export (snapshot + JSON and CSV of every table + zip) against
//!   `VACUUM INTO` alone on the same file, as a ratio.
//! - Subject erasure: one person who belongs to `--erase-tenants` tenants (each with a
//!   project, a task and a comment of theirs), the `subject.erase` job from enqueue to done:
//!   total time and tenants/s; beside it, in the same run, one pass that opens every one of
//!   those tenants through the cache and reads its members (the floor any per-tenant work pays).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use silo_core::TenantRef;
use silo_jobs::{JobStatus, NewJob};
use silo_jobs::{PoolSettings, Workers};
use silo_tenancy::CreateTenant;
use silo_workspace::{projects, tasks};

use crate::measure::{Latencies, accounts_and_server, create_tenants, tenancy};

#[derive(Debug, Args)]
pub struct GdprArgs {
    /// Empty jobs to time.
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    /// Size of the exported tenant, MB (about: 1 KB tasks, full-text indexed, ~2.9 KB each on disk).
    #[arg(long, default_value_t = 100)]
    mb: usize,
    /// Tenants the erased person belongs to.
    #[arg(long, default_value_t = 1000)]
    erase_tenants: usize,
}

pub async fn run(dir: &Path, args: GdprArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 64).await?;

    // Jobs: enqueue → done, one at a time on an idle pool.
    let mut workers = Workers::new();
    workers.register("bench.noop", |_| async { Ok(serde_json::json!({})) });
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let pool = tokio::spawn(workers.run(tenancy.jobs(), PoolSettings::default(), async move {
        let _ = stopping.await;
    }));
    let jobs = tenancy.jobs();
    let mut samples = Vec::with_capacity(args.jobs);
    for _ in 0..args.jobs {
        let started = Instant::now();
        let job = jobs.enqueue(NewJob::new("bench.noop", serde_json::json!({})), "bench").await?;
        while jobs.get(&job.id).await?.status != JobStatus::Done {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(started.elapsed().as_nanos() as u64);
    }
    let _ = stop.send(());
    pool.await?;
    println!("jobs: enqueue → done of an empty job, idle pool: {}", Latencies::new(samples).summary());

    // Export against VACUUM INTO alone.
    let tenant = tenancy.tenants().create(CreateTenant::with_slug("big"), "bench").await?;
    let db = tenancy.db(tenant.id).await?;
    let project = projects::create(&db.turn().await, "bench", "", None)?;
    let body = "x".repeat(1000);
    let rows = args.mb * 1000 * 10 / 29;
    for i in 0..rows {
        let task = tasks::NewTask {
            project_id: project,
            title: format!("task {i}"),
            body: body.clone(),
            ..Default::default()
        };
        tasks::create(&db.turn().await, &task, None)?;
    }
    drop(db);
    let path = tenancy.tenant_path(&tenant)?;
    let size = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let copy = dir.join("vacuum-into.db");
    {
        let copy = copy.clone();
        tenancy
            .cache()
            .with_file(tenant.id, path.clone(), move |conn| Ok(silo_storage::sqlite::snapshot(conn, &copy)?))
            .await?;
    }
    let vacuum = started.elapsed();
    let started = Instant::now();
    tenancy.exports().export(&TenantRef::Id(tenant.id), &dir.join("export.zip"), "bench").await?;
    let export = started.elapsed();
    println!(
        "export of a {:.0} MB tenant ({rows} tasks): {:.2} s; VACUUM INTO alone {:.2} s; ratio {:.2}",
        size as f64 / 1e6,
        export.as_secs_f64(),
        vacuum.as_secs_f64(),
        export.as_secs_f64() / vacuum.as_secs_f64()
    );
    erasure(&tenancy, args.erase_tenants).await?;
    tenancy.shutdown().await;
    Ok(())
}

/// The erasure figure (see the module docs).
async fn erasure(tenancy: &silo_tenancy::Tenancy, count: usize) -> anyhow::Result<()> {
    let (accounts, _) = accounts_and_server(tenancy)?;
    let email = "leaving@example.com";
    accounts.users().create(email, "a long enough password", Some("Leaving"), "bench").await?;
    let user = accounts.users().by_email(email).await?;
    let tenants = create_tenants(tenancy, "erase", count, 8).await?;
    for tenant in &tenants {
        accounts
            .memberships()
            .add(&TenantRef::Id(tenant.id), email, silo_accounts::Role::Member, "bench")
            .await?;
        let db = tenancy.db(tenant.id).await?;
        let member = silo_workspace::members::by_user(&db.turn().await, &user.id)?.map(|m| m.id);
        let project = projects::create(&db.turn().await, "theirs", "", member)?;
        let task = tasks::NewTask { project_id: project, title: "their task".into(), ..Default::default() };
        let task = tasks::create(&db.turn().await, &task, member)?;
        silo_workspace::comments::create(&db.turn().await, task, member, "their comment")?;
    }
    // The floor: every tenant opened (from cold: the cache holds 64) and its members read.
    tenancy.cache().clear().await;
    let started = Instant::now();
    for tenant in &tenants {
        let db = tenancy.db(tenant.id).await?;
        silo_workspace::members::count(&db.turn().await)?;
    }
    let touch = started.elapsed();
    tenancy.cache().clear().await;

    let mut workers = Workers::new();
    silo_accounts::subjects::register(&mut workers, &accounts);
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let pool = tokio::spawn(workers.run(tenancy.jobs(), PoolSettings::default(), async move {
        let _ = stopping.await;
    }));
    let started = Instant::now();
    let job = accounts.subjects().start_erasure(email, "bench").await?;
    let done = loop {
        let job = tenancy.jobs().get(&job.id).await?;
        if matches!(job.status, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took = started.elapsed();
    let _ = stop.send(());
    pool.await?;
    anyhow::ensure!(
        done.status == JobStatus::Done,
        "the erasure job ended {}: {:?}",
        done.status,
        done.last_error
    );
    println!(
        "subject erasure across {count} tenants: {:.2} s ({:.0} tenants/s, {:.2} ms each); opening and reading each of them alone: {:.2} s; ratio {:.2}",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / count as f64,
        touch.as_secs_f64(),
        took.as_secs_f64() / touch.as_secs_f64()
    );
    Ok(())
}
