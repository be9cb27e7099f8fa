//! The LRU handle cache: `TenantId → Arc<TenantDb>` (moka), with single-flight opens, lazy
//! migration, quarantine, leases and counters; which tenants changed ([`changes`]) and their
//! write-ahead logs as continuous backup follows them ([`log`]).
//!
//! - A hit is a moka lookup plus one atomic load (is the handle retired?).
//! - A miss opens once per tenant however many callers wait (moka's `try_get_with`): check the
//!   tenant is active in the control plane, open its file (never creating it), bring its schema
//!   up to date, publish the handle. A handle evicted while requests still hold it is taken
//!   back instead of opening the file a second time: one connection owns a file ([`registry`]).
//! - Work outside requests (backups, exports, the CLI's queries, fleet migration) reaches a
//!   file through its owner ([`HandleCache::with_file`]): the live handle if there is one, else
//!   a connection of its own that keeps the cache from opening the file meanwhile.
//! - Eviction only drops the cache's reference; requests holding the handle finish, and the
//!   connections close when the last one drops it.
//! - A lease refuses new opens, retires and evicts the handle, and waits until every
//!   connection to the file is closed.

pub mod changes;
mod handle;
pub mod log;
mod metrics;
mod registry;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use moka::future::Cache;
use silo_storage::Placement;
use silo_storage::sqlite::{self, OpenMode, SqliteTuning};
use sqlx::migrate::Migration;

pub use handle::{TenantDb, Turn};
pub use metrics::{CacheMetrics, CacheStats};
use registry::{Access, Registry};

use crate::control::{ControlPlane, MigrationRecord, Tenant, TenantStatus};
use crate::{Error, Result, schema};
use silo_core::ids::TenantId;

/// How the cache is sized and how it opens files.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Handles kept at most.
    pub capacity: u64,
    /// Idle handles are closed after this.
    pub idle: Duration,
    /// Connection settings.
    pub tuning: SqliteTuning,
    /// How long a lease waits for connections to close.
    pub lease_timeout: Duration,
    /// The process's open-file limit, for the metrics.
    pub fd_limit: u64,
    /// Opens in progress at most (0: one per core).
    pub open_concurrency: usize,
}

/// The handle cache. Cheap to clone.
#[derive(Clone)]
pub struct HandleCache {
    inner: Arc<Inner>,
}

/// What moka stores. moka frees removed values lazily (epoch-based reclamation), so the cache's
/// reference to a handle is dropped by hand in the eviction listener: otherwise an evicted
/// handle would keep its connections open until some later cache operation.
struct CachedHandle(parking_lot::Mutex<Option<Arc<TenantDb>>>);

impl CachedHandle {
    fn handle(&self) -> Option<Arc<TenantDb>> {
        self.0.lock().clone()
    }
}

struct Inner {
    cache: Cache<TenantId, Arc<CachedHandle>>,
    registry: Arc<Registry>,
    control: ControlPlane,
    placement: Placement,
    config: CacheConfig,
    migrations: Arc<[Migration]>,
    metrics: Arc<CacheMetrics>,
    /// Which tenants were written to (commit hooks on every connection), for the backup
    /// scheduler.
    changes: Arc<changes::ChangeTracker>,
    /// Each tenant's write-ahead log as continuous backup follows it.
    logs: Arc<log::Logs>,
    /// The directory's tenants by slug (shared with `Tenancy::resolve`): cleared after the
    /// cache records a migration or a quarantine in a tenant's row, so the next request sees it.
    tenants: crate::directory::Memo<silo_core::TenantSlug, crate::Tenant>,
    /// Opens in progress at most: each takes a blocking thread and SQLite's global lock on the
    /// open-file list, so beyond the cores more at once only adds context switches (measured
    /// under a Zipf load over 10,000 tenants).
    open_permits: tokio::sync::Semaphore,
    /// The largest file a tenant's plan allows (installed by billing; none: no limit).
    storage_limits: parking_lot::RwLock<Option<StorageLimits>>,
}

/// The largest file (bytes) a plan allows, by plan name; `None`: no limit. Billing installs it
/// ([`HandleCache::set_storage_limits`]); every tenant connection then runs with
/// `PRAGMA max_page_count` derived from it, so the limit holds at the file, whatever writes.
pub type StorageLimits = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// An exclusive hold on a tenant's file. While it lives no handle to the file can open;
/// dropping it releases the tenant.
#[derive(Debug)]
pub struct Lease {
    registry: Arc<Registry>,
    changes: Arc<changes::ChangeTracker>,
    id: TenantId,
}

impl Lease {
    /// The leased tenant.
    pub fn tenant(&self) -> TenantId {
        self.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The holder may have replaced or rewritten the file: what was read before is stale.
        self.changes.bump(self.id);
        self.registry.release(self.id);
    }
}

impl HandleCache {
    /// A cache over the tenants of `control`, placed by `placement`, brought up to date with
    /// `migrations` when opened; `tenants` is the directory's memo of tenant rows it clears
    /// when it writes one.
    pub fn new(
        control: ControlPlane,
        placement: Placement,
        config: CacheConfig,
        migrations: Arc<[Migration]>,
        tenants: crate::directory::Memo<silo_core::TenantSlug, crate::Tenant>,
    ) -> Self {
        let metrics = Arc::new(CacheMetrics::default());
        let evictions = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(config.capacity)
            // Plain LRU rather than moka's default TinyLFU admission: a newly opened tenant is
            // always admitted, so a handle just opened is the one that stays.
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_idle(config.idle)
            .eviction_listener(move |_id, cached: Arc<CachedHandle>, cause| {
                cached.0.lock().take();
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = if config.open_concurrency == 0 { cores.max(2) } else { config.open_concurrency };
        let open_permits = tokio::sync::Semaphore::new(permits);
        let inner = Inner {
            cache,
            registry: Arc::default(),
            control,
            placement,
            config,
            migrations,
            metrics,
            changes: Arc::default(),
            logs: Arc::default(),
            tenants,
            open_permits,
            storage_limits: parking_lot::RwLock::new(None),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Installs the plans' storage limits: handles opened from now on get them.
    pub fn set_storage_limits(&self, limits: StorageLimits) {
        *self.inner.storage_limits.write() = Some(limits);
    }

    /// The storage limit of a plan (none installed, or the plan has none: `None`).
    pub fn storage_limit(&self, plan: &str) -> Option<u64> {
        self.inner.storage_limits.read().as_ref().and_then(|limits| limits(plan))
    }

    /// Applies the storage limit of `tenant`'s plan (its row just after a plan change) to its
    /// open handle at once, if it has one; a handle opened later gets it when it opens.
    pub async fn apply_plan(&self, tenant: &Tenant) -> Result<()> {
        let limit = self.storage_limit(&tenant.plan);
        if let Some(db) = self.inner.cache.get(&tenant.id).await.and_then(|cached| cached.handle()) {
            let as_of = tenant.updated_at.clone();
            tokio::task::spawn_blocking(move || db.limit_size(limit, &as_of, false))
                .await
                .expect("a limit change panicked")?;
        }
        Ok(())
    }

    /// The open handle of a tenant, opening it if needed (its control-plane row is read first).
    pub async fn get(&self, id: TenantId) -> Result<Arc<TenantDb>> {
        self.get_with(id, None).await
    }

    /// The open handle of a tenant whose control-plane row the caller just read (the request
    /// path has it from the directory), so a miss does not read it again.
    ///
    /// A row on another plan than the handle's limit was set for gets that plan's limit
    /// first: in a cluster the plan may change on another server (an operator's `silo tenant
    /// set-plan` there), whose [`HandleCache::apply_plan`] cannot reach this handle; the row
    /// is read afresh once that server announces the change (`crate::directory`). A row older
    /// than the one the limit was set from changes nothing.
    pub async fn get_known(&self, tenant: &Tenant) -> Result<Arc<TenantDb>> {
        let db = self.get_with(tenant.id, Some(tenant)).await?;
        let limit = self.storage_limit(&tenant.plan);
        if db.size_limit() != limit {
            let (applied, as_of) = (db.clone(), tenant.updated_at.clone());
            tokio::task::spawn_blocking(move || applied.limit_size(limit, &as_of, true))
                .await
                .expect("a limit change panicked")?;
        }
        Ok(db)
    }

    async fn get_with(&self, id: TenantId, known: Option<&Tenant>) -> Result<Arc<TenantDb>> {
        let inner = &self.inner;
        if let Some(db) = inner.cache.get(&id).await.and_then(|cached| cached.handle())
            && !db.is_retired()
        {
            inner.metrics.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(db);
        }
        inner.metrics.misses.fetch_add(1, Ordering::Relaxed);
        loop {
            // The caller whose open runs keeps its own reference: under churn the new entry can
            // be evicted (and emptied) before `try_get_with` returns, and the work must not be lost.
            let mut opened = None;
            let open = async {
                let cached = self.open(id, known).await?;
                opened = cached.handle();
                Ok(cached)
            };
            let cached = inner.cache.try_get_with(id, open).await.map_err(Error::Shared)?;
            let handle = opened.or_else(|| cached.handle());
            // Apply evictions now rather than lazily, so the fd count stays within capacity.
            inner.cache.run_pending_tasks().await;
            match handle {
                Some(db) if !db.is_retired() => return Ok(db),
                // Retired or already emptied by an eviction: drop the entry and open afresh;
                // a lease in force makes the next open fail with `Unavailable`.
                _ => self.evict(id).await,
            }
        }
    }

    #[tracing::instrument(name = "tenant_open", skip_all, fields(tenant = %id))]
    async fn open(&self, id: TenantId, known: Option<&Tenant>) -> Result<Arc<CachedHandle>> {
        let inner = &self.inner;
        let _permit = inner.open_permits.acquire().await.expect("the open semaphore is never closed");
        let started = Instant::now();
        let result = async {
            let tenant = match known {
                Some(tenant) => tenant.clone(),
                None => inner.control.tenant_by_id(id).await?,
            };
            match tenant.status {
                TenantStatus::Active => {}
                TenantStatus::Suspended => return Err(Error::Suspended(tenant.slug.to_string())),
                TenantStatus::Deleting | TenantStatus::Deleted => {
                    return Err(Error::Gone(tenant.slug.to_string()));
                }
            }
            if let Some(reason) = tenant.migration_error {
                return Err(Error::Quarantined { tenant: id.to_string(), reason });
            }
            // Only once the tenant may open: a retired handle still held would be waited for.
            let reservation = match self.owner(id).await? {
                Owner::Live(db) => return Ok(Arc::new(CachedHandle(parking_lot::Mutex::new(Some(db))))),
                Owner::Free(reservation) => reservation,
            };
            let path = inner.placement.database_path(tenant.region.as_str(), id.as_uuid())?;
            // Opening touches the disk (and a corrupt file takes a while to refuse): do it on the
            // blocking pool, never on the executor. A file behind the binary's schema is migrated
            // there too, before anyone uses it (the lazy backstop of `silo migrate`).
            let (tuning, file) = (inner.config.tuning, path.clone());
            let (migrations, now) = (inner.migrations.clone(), inner.control.now());
            let changes = inner.changes.clone();
            let log = inner.logs.watching(id);
            let watched = log.clone();
            let limit = self.storage_limit(&tenant.plan);
            let opened = tokio::task::spawn_blocking(move || {
                let mut connection = sqlite::open_sync(&file, tuning, OpenMode::Existing)?;
                changes.watch(&connection, id, watched);
                let migrated = schema::migrate(&mut connection, &migrations, &now);
                // After the migration (a schema change is never refused for the plan's size).
                handle::limit_size(&connection, limit)?;
                Ok::<_, silo_storage::Error>((connection, migrated))
            })
            .await
            .expect("opening a tenant file panicked");
            let (connection, migrated) = match opened {
                Ok(opened) => opened,
                Err(e) => return Err(self.open_failed(id, path, e).await),
            };
            // From here on the handle owns the count: dropping it closes the connection first.
            let clock = self.inner.control.clock().clone();
            let mut db =
                TenantDb::new(id, connection, tenant.schema_version, reservation.into_registry(), clock)
                    .with_log(log.map(|log| (log, path.clone())))
                    .with_deadline(inner.control.ownership().map(|o| o.deadline()));
            db.opened_with_limit(limit, &tenant.updated_at);
            match migrated {
                Ok(outcome) => db.set_schema_version(outcome.version()),
                Err(e) => return Err(self.quarantine(id, format!("migration failed: {e}")).await),
            }
            if db.schema_version() != tenant.schema_version {
                let record =
                    MigrationRecord { tenant: id, schema_version: Some(db.schema_version()), error: None };
                inner.control.record_migrations(&[record]).await?;
                inner.tenants.clear();
            }
            let db = Arc::new(db);
            if !inner.registry.publish(&db) {
                return Err(Error::Unavailable(id.to_string()));
            }
            Ok(Arc::new(CachedHandle(parking_lot::Mutex::new(Some(db)))))
        }
        .await;
        match &result {
            Ok(_) => inner.metrics.record_open(started.elapsed()),
            Err(e) => {
                inner.metrics.open_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tenant = %id, error = %e, "opening tenant failed");
            }
        }
        result
    }

    /// Turns a failed open into the error callers see, quarantining corrupt files.
    async fn open_failed(&self, id: TenantId, path: PathBuf, error: silo_storage::Error) -> Error {
        // SQLite reports a failed open(2) as "unable to open database file" whatever the cause;
        // out of descriptors is the machine's state, not the tenant's: say so (503, retry).
        if let Some((open, limit)) = crate::limits::descriptors_exhausted() {
            return Error::Overloaded(format!(
                "the server is out of file descriptors ({open} of {limit} open); retry shortly"
            ));
        }
        match error {
            silo_storage::Error::FileMissing(path) => Error::FileMissing { tenant: id.to_string(), path },
            e if is_corruption(&e) => {
                self.quarantine(id, format!("cannot open {}: {e}", path.display())).await
            }
            e => e.into(),
        }
    }

    /// Records a quarantine in the control plane and returns the error to report.
    async fn quarantine(&self, id: TenantId, reason: String) -> Error {
        let record = MigrationRecord { tenant: id, schema_version: None, error: Some(reason.clone()) };
        match self.inner.control.record_migrations(&[record]).await {
            Ok(()) => self.inner.tenants.clear(),
            Err(e) => tracing::error!(tenant = %id, error = %e, "recording a quarantine failed"),
        }
        Error::Quarantined { tenant: id.to_string(), reason }
    }

    /// Stops handing out the tenant's current handle (after a status change); requests that
    /// hold it finish.
    pub async fn retire(&self, id: TenantId) {
        self.inner.changes.bump(id);
        self.inner.registry.retire(id);
        self.evict(id).await;
    }

    /// Another server took the tenant over: its live handle refuses every statement from now
    /// on (requests holding it included) and is retired.
    pub async fn revoke(&self, id: TenantId) {
        if let Some(db) = self.inner.registry.live(id) {
            db.revoke();
        }
        self.retire(id).await;
    }

    /// Removes a tenant from the cache and lets moka drop its reference now (it otherwise
    /// keeps removed values until its next housekeeping).
    async fn evict(&self, id: TenantId) {
        self.inner.cache.invalidate(&id).await;
        self.inner.cache.run_pending_tasks().await;
    }

    /// Takes an exclusive lease: new `get`s fail with `Unavailable`, and this returns once
    /// every connection to the tenant's file is closed (or fails after the lease timeout).
    #[tracing::instrument(name = "tenant_lease", skip_all, fields(tenant = %id))]
    pub async fn lease(&self, id: TenantId) -> Result<Lease> {
        let inner = &self.inner;
        if !inner.registry.try_lease(id) {
            return Err(Error::Unavailable(id.to_string()));
        }
        let lease = Lease { registry: inner.registry.clone(), changes: inner.changes.clone(), id };
        let deadline = tokio::time::Instant::now() + inner.config.lease_timeout;
        loop {
            let changed = inner.registry.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Invalidate on every round: an open that passed its lease check just before the
            // lease was taken may have inserted its handle since.
            self.evict(id).await;
            if inner.registry.open_count(id) == 0 {
                return Ok(lease);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() && inner.registry.open_count(id) > 0
            {
                return Err(Error::Unavailable(format!(
                    "{id} (its connections did not close within {:?})",
                    inner.config.lease_timeout
                )));
            }
        }
    }

    /// Waits until the tenant's file is either owned by a live handle or free to open (then
    /// reserved for the caller); refused while a lease holds it.
    /// Waiting is bounded by the lease timeout: a handle held that long (a retired one a
    /// request still uses) makes the caller fail with `Unavailable` rather than hang.
    async fn owner(&self, id: TenantId) -> Result<Owner> {
        let registry = &self.inner.registry;
        let deadline = tokio::time::Instant::now() + self.inner.config.lease_timeout;
        loop {
            let changed = registry.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match registry.access(id) {
                Access::Open(reservation) => return Ok(Owner::Free(reservation)),
                Access::Live(db) => return Ok(Owner::Live(db)),
                Access::Leased => return Err(Error::Unavailable(id.to_string())),
                Access::Busy => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Err(Error::Unavailable(format!(
                            "{id} (its file stayed in use for {:?})",
                            self.inner.config.lease_timeout
                        )));
                    }
                }
            }
        }
    }

    /// Runs `f` on the tenant's file through its owner, on the blocking pool: on the cached
    /// handle's connection (with a turn) when the file is open, else on a connection of its
    /// own, opened without migrating (a snapshot must see the file as it is) and closed after
    /// — the cache waits for it rather than open the file beside it. Refused while a lease
    /// holds the tenant (a file being restored, moved or purged is not read half-way). For
    /// backups, exports, integrity checks, the operator's queries and fleet migration.
    pub async fn with_file<T: Send + 'static>(
        &self,
        id: TenantId,
        path: PathBuf,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.with_file_told(id, path, |conn, _| f(conn)).await
    }

    /// [`HandleCache::with_file`], telling `f` whether the connection is the cached handle's
    /// (`true`) or one of its own, closed after (and so checkpointing its log away).
    pub async fn with_file_told<T: Send + 'static>(
        &self,
        id: TenantId,
        path: PathBuf,
        f: impl FnOnce(&mut rusqlite::Connection, bool) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Some(ownership) = self.inner.control.ownership()
            && !ownership.holds(id)
        {
            // Say which server has it (its work runs there).
            return Err(match ownership.live_owner(&self.inner.control, id).await? {
                Some(owner) if owner.node == ownership.node() => Error::NotServing(format!(
                    "tenant {id} is being restored on this server from the store; retry shortly"
                )),
                Some(owner) => {
                    Error::Elsewhere { tenant: id.to_string(), node: owner.node, advertise: owner.advertise }
                }
                None => Error::NotServing(format!(
                    "tenant {id} is not served by this server (node `{}`) yet: ask for it once, or retry",
                    ownership.node()
                )),
            });
        }
        match self.owner(id).await? {
            Owner::Live(db) => db.call_owned(|conn| f(conn, true)).await,
            Owner::Free(reservation) => {
                let tuning = self.inner.config.tuning;
                let logs = self.inner.logs.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = sqlite::open_sync(&path, tuning, OpenMode::Existing)?;
                    // This connection has none of continuous backup's hooks: a write through it
                    // (an erasure, a migration of a closed tenant) is not in the tenant's chain.
                    let wrote = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let flag = wrote.clone();
                    conn.commit_hook(Some(move || {
                        flag.store(true, Ordering::Relaxed);
                        false
                    }))?;
                    let value = f(&mut conn, false);
                    if wrote.load(Ordering::Relaxed) {
                        logs.written_outside(id);
                    }
                    let value = value?;
                    conn.close()?;
                    drop(reservation);
                    Ok(value)
                })
                .await
                .expect("work on a tenant's file panicked")
            }
        }
    }

    /// Runs `f` on the tenant's cached handle's connection (with a turn) if this process has
    /// the file open; `None` (and nothing run) otherwise. Never opens the file.
    pub async fn with_open_file<T: Send + 'static>(
        &self,
        id: TenantId,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        match self.inner.registry.live(id) {
            Some(db) => Ok(Some(db.call_owned(f).await?)),
            None => Ok(None),
        }
    }

    /// The write tracker fed by the tenant connections' commit hooks.
    pub fn changes(&self) -> &Arc<changes::ChangeTracker> {
        &self.inner.changes
    }

    /// The tenants' write-ahead logs as continuous backup follows them.
    pub fn logs(&self) -> &Arc<log::Logs> {
        &self.inner.logs
    }

    /// Handles opening, open or closing (cheaper than [`HandleCache::stats`]).
    pub fn open_handles(&self) -> u64 {
        self.inner.registry.open_total() as u64
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        CacheStats {
            cached_handles: inner.cache.entry_count(),
            open_handles: inner.registry.open_total() as u64,
            process_fds: crate::limits::open_fds(),
            tenant_fds: crate::limits::tenant_fds(),
            open_files: sqlite::owners::count() as u64,
            fd_limit: inner.config.fd_limit,
            capacity: inner.config.capacity,
            sqlite_memory: silo_storage::memory::sqlite_used(),
            sqlite_memory_budget: silo_storage::memory::budget(),
            resident_memory: silo_storage::memory::resident(),
            ..inner.metrics.snapshot()
        }
    }

    /// Closes every cached handle (shutdown, tests); held handles close when dropped.
    ///
    /// Entry by entry: moka's `invalidate_all` only marks the entries and leaves their removal
    /// to its maintenance, which is bounded per run (a batch, 100 ms); whatever one run did not
    /// reach would stay open until the cache is next used.
    pub async fn clear(&self) {
        let ids: Vec<TenantId> = self.inner.cache.iter().map(|(id, _)| *id).collect();
        for id in ids {
            self.inner.cache.invalidate(&id).await;
        }
        self.inner.cache.run_pending_tasks().await;
    }

    /// Waits until no handle of any tenant is open (after [`HandleCache::clear`]).
    pub async fn wait_all_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.registry.open_total() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// Who owns a tenant's file ([`HandleCache::owner`]).
enum Owner {
    /// The live handle.
    Live(Arc<TenantDb>),
    /// Nobody: the reservation lets the caller open it.
    Free(registry::Reservation),
}

/// SQLite said the file is not a database or is corrupt.
fn is_corruption(error: &silo_storage::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match error {
        silo_storage::Error::Rusqlite(rusqlite::Error::SqliteFailure(e, _)) => {
            matches!(e.code, DatabaseCorrupt | NotADatabase)
        }
        // Primary result codes: SQLITE_CORRUPT = 11, SQLITE_NOTADB = 26.
        silo_storage::Error::Sqlite(sqlx::Error::Database(db)) => {
            db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|code| matches!(code & 0xff, 11 | 26))
        }
        _ => false,
    }
}
