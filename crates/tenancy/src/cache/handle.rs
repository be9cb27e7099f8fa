//! [`TenantDb`]: an open tenant database — its one SQLite connection, called inline.
//!
//! **Driver choice (measured, `silo-bench cache`).** sqlx's SQLite driver runs every
//! connection on its own OS thread and hands each statement over through channels; on this
//! 2-core VM that hand-off costs ~100 µs per warm point read (p50 ~110 µs through a dedicated
//! `SqliteConnection`, more through `SqlitePool`), while the same prepared statement run
//! inline on a rusqlite connection takes ~5 µs. Tenant statements are short, so they run
//! inline on the calling thread under a per-connection lock; opening and closing files (which
//! may checkpoint and fsync) happen on the blocking pool instead. sqlx keeps the control
//! plane and the migrator.
//!
//! **Turns.** A statement that finds its connection busy waits with a blocking lock, which
//! stalls every request of that executor thread — for a scheduler time slice or more when the
//! holder was preempted. Under a Zipf load the hottest tenant's one connection was wanted by
//! both actix workers at once often enough to make p99 30× p50. So request handlers first take
//! a [`Turn`] (an async semaphore with one permit) and hold it while they work: requests over
//! one tenant queue without blocking the thread, and a request holding a turn always finds the
//! connection free. Work outside requests (backups, exports, the CLI's queries) reaches the
//! file through the same connection (`HandleCache::with_file`), taking a turn too.
//!
//! A released turn goes to whichever request asks next, not to the longest waiter: a fair
//! semaphore (tokio's) hands the permit to a waiting task that its executor thread may not
//! poll for a while (each actix worker is a single thread running a queue of requests), and
//! the turn sits idle meanwhile. Under Zipf(1.1) over 3,000 tenants the hottest tenant's
//! requests then waited 10–14 ms for their turn in convoy (7 % of all requests; p99 14 ms
//! against 5.7 ms uniform, `silo-bench http --wrk`). With `async_lock`'s semaphore a released
//! permit is free until taken, and a woken waiter that loses the race waits again.
//!
//! **One connection.** The connection is the file's only one in the process (its owner: see
//! `registry`), in exclusive locking mode with the WAL index in heap memory, so there is
//! nothing to share a file with and nothing to gain from a second connection.
//!
//! **Only through a turn.** The connection is reachable only through a [`Turn`]: `Turn::call`
//! (a short statement, inline) and `Turn::call_blocking` (search over a large file, export,
//! erasure: on the blocking pool, the turn held until it is done). Repository modules
//! (`silo-workspace`'s) take a `&Turn`, so a statement without a turn does not compile. A
//! caller releases its turn (drops it) before it awaits the control plane or renders.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::Connection;
use silo_storage::sqlite::OwnedConnection;

use super::registry::Registry;
use crate::{Error, Result};
use silo_core::Timestamp;
use silo_core::ids::TenantId;

/// A caller's turn at a tenant's connection ([`TenantDb::turn`]): the only way to run SQL on
/// it. Released when dropped (and, for [`Turn::call_blocking`], once that work is done).
pub struct Turn {
    db: Arc<TenantDb>,
    /// Shared with blocking work in flight, so the turn outlives a caller that gave up.
    permit: Arc<async_lock::SemaphoreGuardArc>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("tenant", &self.db.id).finish()
    }
}

impl Turn {
    /// The tenant.
    pub fn id(&self) -> TenantId {
        self.db.id
    }

    /// Now, on the process's clock: what the tenant's rows record as their time.
    pub fn now(&self) -> silo_core::Timestamp {
        self.db.clock.now()
    }

    /// Runs `f` on the tenant's connection, inline. `f` must be a short statement or
    /// transaction (it holds a thread of the executor); long work belongs on
    /// [`Turn::call_blocking`]. This is the door `silo-workspace`'s repositories use.
    pub fn call<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.db.call(f)
    }

    /// Runs `f` on the tenant's connection on the blocking pool (search over a large file,
    /// a person's rows, erasure counts: anything that may take milliseconds), with this turn
    /// held until `f` returns — even if the caller stops waiting.
    pub async fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (db, permit) = (self.db.clone(), self.permit.clone());
        tokio::task::spawn_blocking(move || {
            let done = db.call(f);
            drop(permit);
            done
        })
        .await
        .expect("a tenant query panicked")
    }
}

/// An open tenant database, shared through the handle cache.
pub struct TenantDb {
    id: TenantId,
    connection: Mutex<Option<OwnedConnection>>,
    turns: Arc<async_lock::Semaphore>,
    retired: AtomicBool,
    schema_version: i64,
    registry: Arc<Registry>,
    /// The process's clock (what the tenant's rows record as their time).
    clock: silo_core::ProcessClock,
    /// Continuous backup's log of the file (and the file's path): read out before the
    /// connection closes.
    log: Option<(Arc<super::log::TenantLog>, std::path::PathBuf)>,
    /// This server's lease on its tenants, when servers share the control plane: no statement
    /// runs once it has lapsed (see [`crate::ownership`]).
    deadline: Option<Arc<crate::ownership::Deadline>>,
    /// Set when another server took the tenant over: nothing more runs on this connection.
    revoked: AtomicBool,
    /// The size limit set on the connection, in bytes ([`NO_LIMIT`]: none): a request that
    /// reads another plan in the tenant's row sets that plan's (see
    /// [`super::HandleCache::get_known`]).
    size_limit: AtomicU64,
    /// The `updated_at` of the tenant row whose plan set [`TenantDb::size_limit`].
    limit_as_of: Mutex<Option<Timestamp>>,
}

/// [`TenantDb::size_limit`] of a file without a limit.
const NO_LIMIT: u64 = u64::MAX;

impl std::fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb").field("id", &self.id).finish()
    }
}

impl TenantDb {
    pub(crate) fn new(
        id: TenantId,
        connection: OwnedConnection,
        schema_version: i64,
        registry: Arc<Registry>,
        clock: silo_core::ProcessClock,
    ) -> Self {
        Self {
            id,
            clock,
            turns: Arc::new(async_lock::Semaphore::new(1)),
            connection: Mutex::new(Some(connection)),
            retired: AtomicBool::new(false),
            schema_version,
            registry,
            log: None,
            deadline: None,
            revoked: AtomicBool::new(false),
            size_limit: AtomicU64::new(NO_LIMIT),
            limit_as_of: Mutex::new(None),
        }
    }

    /// Runs statements only while this server's lease holds.
    pub(crate) fn with_deadline(mut self, deadline: Option<Arc<crate::ownership::Deadline>>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Follows the file's log for continuous backup (see [`super::log`]).
    pub(crate) fn with_log(mut self, log: Option<(Arc<super::log::TenantLog>, std::path::PathBuf)>) -> Self {
        self.log = log;
        self
    }

    /// The tenant.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// The file's schema version when it was opened.
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    pub(crate) fn set_schema_version(&mut self, version: i64) {
        self.schema_version = version;
    }

    /// Waits (asynchronously) for a turn at the tenant's connection; see the module docs.
    pub async fn turn(self: &Arc<Self>) -> Turn {
        let permit = self.turns.acquire_arc().await;
        Turn { db: self.clone(), permit: Arc::new(permit) }
    }

    /// Runs `f` on the connection, inline: for a holder of a turn ([`Turn::call`]).
    fn call<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.check_lease()?;
        let mut conn = self.connection();
        f(&mut conn).map_err(|e| self.classify(&conn, e))
    }

    /// Runs `f` on the tenant's connection on the blocking pool, with a turn: the door for work
    /// outside requests (`HandleCache::with_file`).
    pub(crate) async fn call_owned<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // No lease check here: this is work outside requests (shipping the commits made under
        // the lease, backups, exports); only requests' statements must stop at the deadline
        // (see `crate::ownership`), and another server never reads this copy of the file.
        let turn = self.turn().await;
        tokio::task::spawn_blocking(move || {
            let done = f(&mut turn.db.connection());
            // Released only once the work is done, even if the caller stopped waiting.
            drop(turn);
            done
        })
        .await
        .expect("work on a tenant's connection panicked")
    }

    /// Refuses once this server's lease lapsed: another server may own the tenant soon, and
    /// two servers never write one tenant.
    fn check_lease(&self) -> Result<()> {
        if self.revoked.load(Ordering::Acquire) {
            return Err(Error::NotServing(format!(
                "tenant {}: another server serves it now; retry",
                self.id
            )));
        }
        match &self.deadline {
            Some(deadline) if !deadline.holds() => Err(Error::NotServing(format!(
                "tenant {}: this server has lost touch with the control plane; it serves the tenant again once its lease is renewed",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// SQLite says `SQLITE_FULL` both when the file reached its plan's limit (`max_page_count`)
    /// and when the disk is full; the free space of the file's disk tells which. A limited file
    /// on a disk with room left hit its quota (the tenant's to change: 507); otherwise the disk
    /// is full (the machine's state: 503). Either way the statement was rolled back and nothing
    /// acknowledged is lost.
    fn classify(&self, conn: &Connection, error: rusqlite::Error) -> Error {
        let full =
            matches!(&error, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull);
        if !full {
            return Error::from(error);
        }
        let limited = conn
            .query_row("PRAGMA max_page_count", [], |row| row.get::<_, i64>(0))
            .is_ok_and(|max| max < UNLIMITED_PAGES);
        let free =
            conn.path().and_then(|path| silo_storage::sqlite::disk_space(std::path::Path::new(path)).ok());
        match free {
            Some(space) if limited && space.available >= DISK_ROOM => {
                Error::QuotaExceeded(self.id.to_string())
            }
            _ => Error::from(error),
        }
    }

    /// Sets the largest size the file may grow to (`None`: no limit), for the plan of the
    /// tenant's row as of `as_of` (its `updated_at`): a plan change's own, or — `newer_only` —
    /// one a request read, which is ignored when the limit was set from a newer row (a request
    /// that read the row before a plan change must not put the old limit back after it).
    pub(crate) fn limit_size(
        &self,
        max_bytes: Option<u64>,
        as_of: &Timestamp,
        newer_only: bool,
    ) -> Result<()> {
        let conn = self.connection();
        let mut set_as_of = self.limit_as_of.lock();
        if newer_only && set_as_of.as_ref().is_some_and(|set| set >= as_of) {
            return Ok(());
        }
        limit_size(&conn, max_bytes)?;
        self.limited_to(max_bytes);
        *set_as_of = Some(as_of.clone());
        Ok(())
    }

    /// Records the limit set on the connection at open, for the row read then.
    pub(crate) fn opened_with_limit(&self, max_bytes: Option<u64>, as_of: &Timestamp) {
        self.limited_to(max_bytes);
        *self.limit_as_of.lock() = Some(as_of.clone());
    }

    fn limited_to(&self, max_bytes: Option<u64>) {
        self.size_limit.store(max_bytes.unwrap_or(NO_LIMIT), Ordering::Release);
    }

    /// The size limit set on the connection.
    pub(crate) fn size_limit(&self) -> Option<u64> {
        Some(self.size_limit.load(Ordering::Acquire)).filter(|&limit| limit != NO_LIMIT)
    }

    /// The connection, waiting for it if another caller has it. The wait is a blocking lock:
    /// holders never await while holding it, so it lasts one short statement.
    fn connection(&self) -> parking_lot::MappedMutexGuard<'_, Connection> {
        MutexGuard::map(self.connection.lock(), |conn| {
            &mut **conn.as_mut().expect("a tenant's connection is open until the handle drops")
        })
    }

    /// Whether the handle was retired (suspension, deletion, lease): callers must reopen.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Another server took the tenant over: no statement runs on this handle any more.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for TenantDb {
    fn drop(&mut self) {
        let connection = self.connection.lock().take();
        let registry = self.registry.clone();
        let id = self.id;
        let log = self.log.take();
        // Closing the connection checkpoints the WAL (and fsyncs): not on the executor. The
        // registry hears of it only once the file is really closed, which the next owner (an
        // open, a lease) relies on.
        let close = move || {
            // Its close checkpoints the log away: what was not shipped is read out first.
            if let (Some((log, path)), Some(_)) = (&log, &connection) {
                log.before_close(path);
            }
            if let Some(Err(e)) = connection.map(OwnedConnection::close) {
                tracing::warn!(tenant = %id, error = %e, "closing a tenant connection failed");
            }
            registry.closed(id);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}

/// SQLite's default `max_page_count` (no limit beyond the format's).
const UNLIMITED_PAGES: i64 = 4_294_967_294;

/// Free space above which a `SQLITE_FULL` of a limited file is its quota, not the disk: more
/// than a tenant statement writes (a task is at most tens of KiB, with its index entries), so
/// a disk that refused it has less.
const DISK_ROOM: u64 = 4 * 1024 * 1024;

/// `PRAGMA max_page_count` for `max_bytes` on one connection (`None`: no limit). SQLite never
/// sets it below the file's current size: a file already over a lowered limit keeps its data,
/// can be read and can shrink, but cannot grow.
pub(crate) fn limit_size(conn: &Connection, max_bytes: Option<u64>) -> rusqlite::Result<()> {
    let pages = match max_bytes {
        None => UNLIMITED_PAGES,
        Some(bytes) => {
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            (bytes as i64 / page_size.max(512)).clamp(1, UNLIMITED_PAGES)
        }
    };
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
}
