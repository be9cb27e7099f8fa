//! `silo-bench memory`: what a cached tenant costs in memory, and where it goes.
//!
//! `--tenants` tenants with `--tasks` tasks each (written as the HTTP benchmark's fixture
//! writes them, then checkpointed), all closed; then every one is opened through the handle
//! cache and its first page of tasks read (a read-mostly fleet), and the growth of the
//! process's RSS and of SQLite's own allocations is divided by the tenants cached. One tenant
//! connection's `sqlite3_db_status` shows where SQLite's share goes (lookaside, page cache,
//! schema, prepared statements). Then each tenant takes one write (a task), the same is
//! reported again (a written page stays cached), and finally the cache is closed: RSS before
//! and after `malloc_trim`, to show whether freed memory returns to the system.
//!
//! Settings come from `SILO_…` variables as for `silo serve` (e.g.
//! `SILO_CACHE__PAGE_CACHE_KIB`), so variants compare side by side.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use silo_tenancy::{Tenancy, Turn};
use silo_workspace::projects;
use silo_workspace::tasks::{self, NewTask, TaskFilter};

use crate::measure::{create_tenants, proc_status, tenancy};

/// `silo-bench memory` options.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Tenants cached.
    #[arg(long, default_value_t = 2_000)]
    tenants: usize,
    /// Tasks per tenant.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
}

pub async fn run(dir: &Path, args: MemoryArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, args.tenants as u64 + 16).await?;
    let started = Instant::now();
    let created = create_tenants(&tenancy, "m", args.tenants, 4).await?;
    let task_count = args.tasks;
    futures::stream::iter(created.iter().map(|t| t.id).collect::<Vec<_>>())
        .map(|id| {
            let tenancy = tenancy.clone();
            async move {
                let db = tenancy.db(id).await?;
                let project = projects::create(&db.turn().await, "bench", "", None)?;
                for i in 0..task_count {
                    let title = format!("task {i}");
                    tasks::create(
                        &db.turn().await,
                        &NewTask { project_id: project, title, ..Default::default() },
                        None,
                    )?;
                }
                db.turn().await.call(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!("setup: {} tenants × {task_count} tasks in {:.0?}", args.tenants, started.elapsed());
    close_all(&tenancy).await?;
    silo_storage::memory::return_freed();
    let base = Snapshot::take(&tenancy);
    println!("closed: {base}; SQLite's budget {} MiB", silo_storage::memory::budget() / (1024 * 1024));

    for tenant in &created {
        let db = tenancy.db_for(tenant).await?;
        tasks::list(&db.turn().await, &TaskFilter::default(), 21)?;
    }
    let read = Snapshot::take(&tenancy);
    println!("after opening each and reading its first page: {read}");
    println!("  per cached tenant: {}", read.per_tenant(&base));
    println!("  one connection: {}", status(&tenancy.db_for(&created[0]).await?.turn().await)?);

    for tenant in &created {
        let db = tenancy.db_for(tenant).await?;
        tasks::create(
            &db.turn().await,
            &NewTask { project_id: 1, title: "one more".into(), ..Default::default() },
            None,
        )?;
    }
    let written = Snapshot::take(&tenancy);
    println!("after one write to each: {written}");
    println!("  per cached tenant: {}", written.per_tenant(&base));
    println!("  one connection: {}", status(&tenancy.db_for(&created[0]).await?.turn().await)?);

    let started = Instant::now();
    close_all(&tenancy).await?;
    println!("closing every handle: {:.1?}; {}", started.elapsed(), Snapshot::take(&tenancy));
    silo_storage::memory::return_freed();
    println!("after malloc_trim(0): {}", Snapshot::take(&tenancy));
    tenancy.shutdown().await;
    Ok(())
}

async fn close_all(tenancy: &Tenancy) -> anyhow::Result<()> {
    tenancy.cache().clear().await;
    anyhow::ensure!(tenancy.cache().wait_all_closed(Duration::from_secs(600)).await, "handles still open");
    Ok(())
}

/// The process's memory at one point.
struct Snapshot {
    rss_kib: u64,
    sqlite_bytes: i64,
    cached: u64,
}

impl Snapshot {
    fn take(tenancy: &Tenancy) -> Self {
        Self {
            rss_kib: proc_status("VmRSS:"),
            sqlite_bytes: silo_storage::memory::sqlite_used() as i64,
            cached: tenancy.cache().stats().cached_handles,
        }
    }

    fn per_tenant(&self, base: &Snapshot) -> String {
        let n = (self.cached.saturating_sub(base.cached)).max(1) as f64;
        format!(
            "RSS {:.1} KiB, SQLite {:.1} KiB",
            self.rss_kib.saturating_sub(base.rss_kib) as f64 / n,
            (self.sqlite_bytes - base.sqlite_bytes) as f64 / 1024.0 / n
        )
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.0} MiB, SQLite {:.0} MiB, {} cached",
            self.rss_kib as f64 / 1024.0,
            self.sqlite_bytes as f64 / (1024.0 * 1024.0),
            self.cached
        )
    }
}

/// `sqlite3_db_status` of a tenant's connection: lookaside slots, page cache, schema and
/// prepared statements, in KiB.
fn status(db: &Turn) -> anyhow::Result<String> {
    let report = db.call(|conn| {
        let mut parts = Vec::new();
        for (name, op) in [
            ("lookaside slots used", rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_USED),
            ("page cache", rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED),
            ("schema", rusqlite::ffi::SQLITE_DBSTATUS_SCHEMA_USED),
            ("statements", rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED),
        ] {
            let (current, high) = db_status(conn, op);
            parts.push(if op == rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_USED {
                format!("{name} {current} (high {high})")
            } else {
                format!("{name} {:.1} KiB", current as f64 / 1024.0)
            });
        }
        Ok(parts.join(", "))
    })?;
    Ok(report)
}

// The benches' FFI reads of counters: no pointers kept, nothing written.
#[allow(unsafe_code)]
fn db_status(conn: &rusqlite::Connection, op: i32) -> (i32, i32) {
    let (mut current, mut high) = (0, 0);
    // SAFETY: the handle is the live connection's; the two out-pointers are locals.
    unsafe { rusqlite::ffi::sqlite3_db_status(conn.handle(), op, &mut current, &mut high, 0) };
    (current, high)
}
