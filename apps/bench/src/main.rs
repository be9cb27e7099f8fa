//! `silo-bench`: Silo's speed and memory benchmarks, run against real SQLite files in a
//! scratch directory. Each subcommand prints its figures as a table (and JSON with `--json`).
//!
//! - `silo-bench cache`: warm `get`, warm point reads (TenantDb vs bare connection vs pool),
//!   cold opens with 0 and 5,000 other tenants open, a Zipf(1.1) workload, and churn.
//! - `silo-bench provision`: tenants created per second.
//! - `silo-bench migrate`: fleet migration throughput at concurrency 1 and 2.
//! - `silo-bench admin`: the admin console's tenant queries over 100,000 tenants.
//! - `silo-bench http`: the HTTP server under load (health, API reads on one and on many
//!   tenants, writes, a signed-in page) and where a request's time goes.
//! - `silo-bench backup`: a fleet backup beside `cp -r`, an incremental pass (PUTs counted),
//!   restore throughput beside plain reads, and the unavailability of a region move.
//! - `silo-bench open`: a cold open and first read beside the bare SQLite floor, alone and
//!   with 5,000 other tenants open.
//! - `silo-bench scheduler`: the backup scheduler's pass with nothing changed (whole fleet vs
//!   incremental) and the CPU of an idle scheduler loop.
//! - `silo-bench billing`: metering's cost on the request path (on vs off, one run), and the
//!   billing run over 100,000 tenants.
//! - `silo-bench continuous`: continuous backup's cost (idle fleet, writers: PUTs, lag,
//!   shipper CPU) and a copy of the control plane.
//! - `silo-bench pitr`: a restore to a moment (a 100 MB snapshot and an hour of segments)
//!   beside restoring the snapshot alone.
//! - `silo-bench cluster`: several `silo serve` on one PostgreSQL and one store: the forwarded
//!   request's overhead, every tenant answering on every server, SIGKILL of a server under
//!   writes (takeover time, acknowledged writes lost, integrity).
//! - `silo-bench rpo`: what a lost machine loses: `silo serve` killed under writes, its data
//!   directory deleted, `silo recover --from-store`; acknowledged writes looked for.
//! - `silo-bench login`: the cost of a sign-in and a burst of wrong-password sign-ins against
//!   a `silo serve` process (guesses checked, peak memory); `--silo` measures another build.

mod admin;
mod backup;
mod billing;
mod cache;
mod cluster;
mod continuous;
mod fleet;
mod gdpr;
mod http;
mod login;
mod measure;
mod memory;
mod open;
mod pitr;
mod rpo;
mod scheduler;
mod shared_schema;
mod soak;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Silo benchmarks.
#[derive(Debug, Parser)]
#[command(name = "silo-bench")]
struct Cli {
    /// Scratch directory for tenant files (default: a temp dir under ./target).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The handle cache.
    Cache(cache::CacheArgs),
    /// The admin console's tenant list over a large control plane.
    Admin {
        /// Tenant rows to insert.
        #[arg(long, default_value_t = 100_000)]
        tenants: usize,
    },
    /// The HTTP server under load.
    Http(http::HttpArgs),
    /// Backups, restores and region moves.
    Backup(backup::BackupArgs),
    /// Continuous backup: idle cost, shipper CPU, requests and lag with writers.
    Continuous(continuous::ContinuousArgs),
    /// A restore to a moment (snapshot + an hour of segments) beside the snapshot alone.
    Pitr(pitr::PitrArgs),
    /// What a lost machine loses: SIGKILL under writes, the data directory deleted, `silo recover`.
    Rpo(rpo::RpoArgs),
    /// Sign-in cost and a burst of guesses against a `silo serve` process.
    Login(login::LoginArgs),
    /// What a cached tenant costs in memory, and where it goes.
    Memory(memory::MemoryArgs),
    /// Cold opens against the bare SQLite floor.
    Open(open::OpenArgs),
    /// Memory, descriptors and threads over a long mixed load.
    Soak(soak::SoakArgs),
    /// The backup scheduler's cost when nothing changed.
    Scheduler(scheduler::SchedulerArgs),
    /// Provisioning throughput.
    Provision {
        /// Tenants to create.
        #[arg(long, default_value_t = 1000)]
        tenants: usize,
    },
    /// Metering's cost on the request path; the billing run at scale.
    Billing(billing::BillingArgs),
    /// Durable jobs' latency and a tenant export against VACUUM INTO.
    Gdpr(gdpr::GdprArgs),
    /// One large fleet end to end: provisioning, disk, admin queries, migration, backups, load.
    Fleet(fleet::FleetArgs),
    /// Several `silo serve` on one PostgreSQL: forwarding, every tenant everywhere, SIGKILL failover.
    Cluster(cluster::ClusterArgs),
    /// Fleet migration throughput.
    Migrate {
        /// Tenants to migrate.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let base = cli.dir.unwrap_or_else(|| PathBuf::from("target/bench-data"));
    std::fs::create_dir_all(&base)?;
    let scratch = tempfile::tempdir_in(&base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(silo_tenancy::limits::MAX_BLOCKING_THREADS)
        .build()?;
    println!("silo-bench: scratch {} on {} cores", scratch.path().display(), measure::cores());
    let dir = scratch.path().to_owned();
    // On a worker thread, as server code runs, rather than on the blocked main thread.
    runtime.block_on(async move {
        tokio::spawn(async move {
            match cli.command {
                Command::Cache(args) => cache::run(&dir, args).await,
                Command::Http(args) => http::run(&dir, args).await,
                Command::Backup(args) => backup::run(&dir, args).await,
                Command::Continuous(args) => continuous::run(&dir, args).await,
                Command::Login(args) => login::run(&dir, args).await,
                Command::Rpo(args) => rpo::run(&dir, args).await,
                Command::Pitr(args) => pitr::run(&dir, args).await,
                Command::Open(args) => open::run(&dir, args).await,
                Command::Memory(args) => memory::run(&dir, args).await,
                Command::Scheduler(args) => scheduler::run(&dir, args).await,
                Command::Soak(args) => soak::run(&dir, args).await,
                Command::Admin { tenants } => admin::run(&dir, tenants).await,
                Command::Provision { tenants } => fleet::provision(&dir, tenants).await,
                Command::Migrate { tenants } => fleet::migrate(&dir, tenants).await,
                Command::Fleet(args) => fleet::fleet(&dir, args).await,
                Command::Cluster(args) => cluster::run(&dir, args).await,
                Command::Gdpr(args) => gdpr::run(&dir, args).await,
                Command::Billing(args) => billing::run(&dir, args).await,
            }
        })
        .await?
    })
}
