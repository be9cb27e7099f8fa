//! `silo-tenancy`: the fleet — the control plane's tenant tables, the tenant lifecycle, the LRU
//! handle cache with its leases and turns, the tenant-migration runner, export, and the
//! erasure ledger that every restore replays. Backups, restores and moves are `silo-backups`',
//! above it, reached from here through the [`Copies`] seam.
//!
//! [`Tenancy`] is the core: it opens `control.db`, checks the SQLite library, sizes the handle
//! cache to the process's limits, and answers lookups (a tenant by slug or id, its open handle).
//! Everything else is a named service it hands out, one module each. Tenant SQL lives in
//! `silo-workspace`, behind a [`Turn`]; the application hands its schemas to [`Tenancy::open`].
//!
//! # Layout
//! - [`Tenancy`] (this file): the core and the service accessors.
//! - [`lifecycle`]: [`Tenants`] — create (a migrated template copied into place), suspend,
//!   resume, delete, purge, rename, plan.
//! - [`fleet`]: [`Fleet`] — migrating every tenant file; [`schema`]: migrating one, and the
//!   [`Schema`] the application hands over (the control plane's migrations, the tenant schema).
//! - [`members`]: [`Members`], the seam to the owner of memberships (a new tenant's founder, a
//!   clone's members, a restored file's current members), registered by `silo-accounts`.
//! - [`erasure`]: [`Erasures`] — the erasure ledger, erasing inside one file, replay on restore.
//! - [`copies`]: [`Copies`], the seam to the owner of the tenants' copies outside their files
//!   (a purge deletes them, an erasure replaces `control.db`'s, a migration may take one
//!   first, a stop ships the last commits), registered by `silo-backups`.
//! - [`export`]: [`Exports`]; [`query`]: [`Queries`].
//! - [`jobs`]: the fleet's job kinds (exports, purges), run by `silo-jobs`' queue.
//! - [`cache`]: the handle cache, leases, turns, which tenants changed
//!   ([`cache::changes`]), their logs as continuous backup follows them ([`cache::log`]);
//!   [`limits`]: its sizing.
//! - [`control`]: `control.db`, its tenants table and the process's clock
//!   ([`ControlPlane::now`]); [`directory`]: remembered answers
//!   ([`directory::Memo`]). Ids and time are `silo-core`'s.
//! - [`privacy`]: personal-data manifests (what erasure does with each column).
//! - [`nodes`]: [`nodes::Nodes`] — the servers of the control plane and their heartbeats;
//!   [`ownership`]: which server serves each tenant, the servers' leases and fencing,
//!   takeovers; [`room`]: where tenants go (the server with the most room); [`peers`]: the
//!   seam to the other servers (a move asks the target to prepare), registered by the server.
//! - [`config`]: the fleet's settings (read by `silo-core`'s loader); [`process_lock`]: one server per data
//!   directory; `error`: [`Error`] (the fleet's; the layers above wrap it) and [`Error::kind`].

pub mod cache;
pub mod config;
pub mod control;
pub mod control_copy;
pub mod copies;
pub mod directory;
pub mod erasure;
mod error;
pub mod export;
pub mod fleet;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod members;
pub mod nodes;
pub mod ownership;
pub mod peers;
pub mod privacy;
pub mod process_lock;
pub mod query;
pub mod room;
pub mod schema;
pub mod scratch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use silo_core::{TenantId, TenantRef, TenantSlug};
use silo_storage::Placement;
use sqlx::migrate::Migration;
use tokio::sync::OnceCell;

pub use cache::changes::DataVersion;
pub use cache::{CacheStats, HandleCache, Lease, StorageLimits, TenantDb, Turn};
pub use config::Settings;
pub use control::{ControlPlane, Tenant, TenantFilter, TenantQuery, TenantSort, TenantStatus};
pub use copies::Copies;
pub use erasure::{Erasures, TenantSchema};
pub use error::{Error, Result};
pub use export::Exports;
pub use fleet::Fleet;
pub use lifecycle::{CreateTenant, Founder, Seed, Tenants};
pub use members::{CurrentMember, Members};
pub use process_lock::DataDirLock;
pub use query::Queries;
pub use schema::Schema;

/// The tenancy layer of one Silo process.
#[derive(Clone)]
pub struct Tenancy {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    control: ControlPlane,
    placement: Placement,
    cache: HandleCache,
    /// Which tenant a slug names (see [`directory`]).
    tenants_by_slug: directory::Memo<TenantSlug, Tenant>,
    /// What every memo of this process shares: the other servers' changes.
    directory_link: Arc<directory::Link>,
    sqlite_version: String,
    /// A migrated, closed tenant file that provisioning copies (built once per process).
    template: OnceCell<PathBuf>,
    /// The master key (loaded on first use): wraps data keys, seals links in the outbox.
    master_key: OnceCell<Arc<silo_storage::crypto::MasterKey>>,
    /// The tenant schema (the product's migrations and eraser, given at open).
    schema: TenantSchema,
    /// The durable job queue (in `control.db`, run by `silo-jobs`).
    jobs: silo_jobs::Jobs,
    /// The owner of memberships (registered by the accounts): a new tenant's first member, a
    /// clone's members, a restored file's current members.
    members: parking_lot::RwLock<Option<Arc<dyn Members>>>,
    /// Statements the crates above run in a purge's transaction over their own tables
    /// (`?1` is the tenant's id): memberships, invitations, mail, billing contacts (the
    /// backups' come with their [`Copies`]).
    purge_statements: parking_lot::RwLock<Vec<&'static str>>,
    /// The owner of the tenants' copies outside their files (registered by the backups).
    copies: std::sync::OnceLock<Arc<dyn Copies>>,
    /// The other servers of the cluster (registered by the server).
    peers: std::sync::OnceLock<Arc<dyn peers::Peers>>,
}

impl Tenancy {
    /// Checks SQLite, opens and migrates the control plane, and builds the handle cache.
    /// `schema` is what the application assembled: the control plane's migrations, and the
    /// product's tenant schema — tenancy applies its migrations to every file it opens or
    /// provisions, and its eraser to every restored file, without knowing what the file holds.
    pub async fn open(settings: Settings, schema: Schema) -> Result<Self> {
        let Schema { control: control_migrations, control_postgres, tenant: schema } = schema;
        let migrations = schema.migrations;
        let sqlite_version = silo_storage::sqlite::linked_version().await?;
        let placement = settings.placement()?;
        // An empty SILO_CONTROL__URL is no URL.
        let url = settings.control.url.as_ref().filter(|url| !url.expose().trim().is_empty());
        control::check_data_dir(&settings.data_dir, url.is_some())?;
        let control = match url {
            None => {
                ControlPlane::open(&settings.control_db_path(), control_migrations, settings.clock.clone())
                    .await?
            }
            Some(url) => {
                let connections = settings.control.max_connections.unwrap_or(16);
                let belongs = control::marked_identity(&settings.data_dir);
                let clock = settings.clock.clone();
                let control = ControlPlane::open_postgres(
                    url,
                    connections,
                    control_postgres,
                    clock,
                    belongs.as_deref(),
                )
                .await?;
                control::mark_data_dir(&settings.data_dir, &control.identity().await?)?;
                control
            }
        };
        let fd_limit = limits::raise_nofile_limit();
        let page_cache = settings.cache.page_cache_kib;
        let capacity = if settings.cache.capacity == 0 {
            let memory = limits::memory_limit();
            let (capacity, fd_fit, memory_fit) = limits::auto_capacity(page_cache, fd_limit, memory);
            tracing::info!(
                capacity,
                fits_descriptors = fd_fit,
                fits_half_the_memory = memory_fit,
                memory_mib = memory.map(|m| m / (1024 * 1024)),
                "cache capacity chosen from the open-file limit and memory ([cache] capacity = 0)"
            );
            capacity
        } else {
            let (capacity, warning) = limits::clamp_capacity(settings.cache.capacity, fd_limit);
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            capacity
        };
        let config = cache::CacheConfig {
            capacity,
            idle: Duration::from_secs(settings.cache.idle_seconds),
            tuning: settings.tenant_tuning(),
            lease_timeout: Duration::from_millis(settings.cache.lease_timeout_ms),
            fd_limit,
            open_concurrency: settings.cache.open_concurrency,
        };
        let memory_budget = limits::memory_budget(settings.cache.memory_mib, capacity);
        silo_storage::memory::limit_arenas();
        silo_storage::memory::set_budget(memory_budget);
        tracing::info!(
            capacity,
            fd_limit,
            sqlite_memory_budget_mib = memory_budget / (1024 * 1024),
            worst_case_memory_mib =
                limits::worst_case_memory(capacity, settings.cache.page_cache_kib) / (1024 * 1024),
            "handle cache sized"
        );
        let directory_link = Arc::new(directory::Link::default());
        let tenants_by_slug = directory::Memo::linked(directory_link.clone());
        let cache = HandleCache::new(
            control.clone(),
            placement.clone(),
            config,
            Arc::from(migrations),
            tenants_by_slug.clone(),
        );
        let jobs =
            silo_jobs::Jobs::new(control.writer().clone(), control.reader().clone(), settings.clock.clone());
        let inner = Inner {
            settings,
            jobs,
            control,
            placement,
            cache,
            tenants_by_slug,
            directory_link,
            sqlite_version,
            template: OnceCell::new(),
            master_key: OnceCell::new(),
            schema,
            members: parking_lot::RwLock::new(None),
            purge_statements: parking_lot::RwLock::new(Vec::new()),
            copies: std::sync::OnceLock::new(),
            peers: std::sync::OnceLock::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The control plane.
    pub fn control(&self) -> &ControlPlane {
        &self.inner.control
    }

    /// The handle cache.
    pub fn cache(&self) -> &HandleCache {
        &self.inner.cache
    }

    /// The regions.
    pub fn placement(&self) -> &Placement {
        &self.inner.placement
    }

    /// The master key: `backup.master_key` (`SILO_MASTER_KEY`), else the key file (created on
    /// first use).
    pub async fn master_key(&self) -> Result<&Arc<silo_storage::crypto::MasterKey>> {
        self.inner
            .master_key
            .get_or_try_init(|| async { config::load_master_key(self.settings()).map(Arc::new) })
            .await
    }

    /// The tenant schema every file is brought to.
    pub fn migrations(&self) -> &'static [Migration] {
        self.inner.schema.migrations
    }

    /// Deletes the plaintext scratch copies (export snapshots, verifications in
    /// `<data_dir>/tmp`, restore staging beside the tenant files) that a killed process left;
    /// returns how many went. Run at start, hourly, and by every purge and erasure.
    pub fn sweep_scratch(&self) -> usize {
        let placement = self.placement();
        let staging: usize = placement
            .names()
            .iter()
            .filter_map(|region| placement.root(region).ok())
            .map(scratch::sweep_restores_under)
            .sum();
        scratch::sweep_tmp(&self.settings().data_dir) + staging
    }

    /// Registers the owner of memberships (the accounts do, when built).
    pub fn set_members(&self, members: Arc<dyn Members>) {
        *self.inner.members.write() = Some(members);
    }

    /// The owner of the tenants' copies: the one registered, else the one `init` makes (and
    /// registers). One per fleet: every caller gets the same.
    pub fn copies_or_register(&self, init: impl FnOnce() -> Arc<dyn Copies>) -> Arc<dyn Copies> {
        self.inner.copies.get_or_init(init).clone()
    }

    /// Registers how this server reaches the other servers of its cluster (once).
    pub fn set_peers(&self, peers: Arc<dyn peers::Peers>) {
        let _ = self.inner.peers.set(peers);
    }

    /// How this server reaches the other servers of its cluster, when registered.
    pub fn peers(&self) -> Option<Arc<dyn peers::Peers>> {
        self.inner.peers.get().cloned()
    }

    /// The registered owner of the tenants' copies, if any.
    pub fn copies(&self) -> Option<Arc<dyn Copies>> {
        self.inner.copies.get().cloned()
    }

    /// The registered owner of the copies, or why a change that must reach them (`action`) is
    /// refused.
    pub fn copies_for(&self, action: &str) -> Result<Arc<dyn Copies>> {
        self.copies().ok_or_else(|| {
            Error::Unavailable(format!(
                "{action} must reach the backups, and no backup service is set up in this process"
            ))
        })
    }

    /// Replaces the copies of `control.db` in the backup store by one of it as it is now
    /// (after an erasure removed a person from it). Refused when no backup service is set up
    /// in this process: the old copies would keep what was removed.
    pub async fn supersede_control_copies(&self) -> Result<usize> {
        self.copies_for("replacing the control plane's copies")?.supersede_control_copies(self).await
    }

    /// The registered owner of memberships, if any.
    pub fn members(&self) -> Option<Arc<dyn Members>> {
        self.inner.members.read().clone()
    }

    /// Adds statements to every purge's control-plane transaction (`?1`: the tenant id): a crate
    /// above removes what its own tables hold about the purged tenant (its SQL stays with its
    /// tables).
    pub fn add_purge_statements(&self, statements: &[&'static str]) {
        self.inner.purge_statements.write().extend_from_slice(statements);
    }

    /// The statements [`Tenancy::add_purge_statements`] registered.
    pub(crate) fn purge_statements(&self) -> Vec<&'static str> {
        self.inner.purge_statements.read().clone()
    }

    /// A tenant's current members, when an owner of memberships is registered.
    pub async fn current_members(&self, tenant: TenantId) -> Result<Option<Vec<CurrentMember>>> {
        match self.members() {
            Some(members) => Ok(Some(members.current(tenant).await?)),
            None => Ok(None),
        }
    }

    /// The product's tenant schema.
    pub fn schema(&self) -> TenantSchema {
        self.inner.schema
    }

    /// The SQLite library version in use.
    pub fn sqlite_version(&self) -> &str {
        &self.inner.sqlite_version
    }

    /// Looks a tenant up by slug or id.
    pub async fn tenant(&self, tenant: &TenantRef) -> Result<Tenant> {
        self.inner.control.tenant(tenant).await
    }

    /// Looks a tenant up by slug for a request: answered from the [`directory`] when it can,
    /// so the hot path costs no control-plane query.
    pub async fn resolve(&self, slug: &TenantSlug) -> Result<Tenant> {
        let control = self.inner.control.clone();
        self.inner
            .tenants_by_slug
            .get_or_read(
                slug.clone(),
                |slug| async move { control.tenant_inline(&TenantRef::Slug(slug)).await },
            )
            .await
    }

    /// Forgets remembered tenant lookups (after a lifecycle change committed).
    pub fn forget_tenants(&self) {
        self.inner.tenants_by_slug.clear();
    }

    /// The open handle of an active tenant.
    pub async fn db(&self, id: TenantId) -> Result<Arc<TenantDb>> {
        if self.control().ownership().is_some() {
            let tenant = self.control().tenant_by_id(id).await?;
            return self.db_for(&tenant).await;
        }
        self.inner.cache.get(id).await
    }

    /// The open handle of a tenant the caller has just looked up (by [`Tenancy::resolve`]): a
    /// cache miss trusts that row instead of reading the control plane again.
    pub async fn db_for(&self, tenant: &Tenant) -> Result<Arc<TenantDb>> {
        self.serve(tenant).await?;
        self.inner.cache.get_known(tenant).await
    }

    /// The tenant's data version in this process: validates what was read from its file
    /// without opening it (see [`cache::changes`]).
    pub fn data_version(&self, id: TenantId) -> DataVersion {
        self.cache().changes().version(id)
    }

    /// Where a tenant's file is.
    pub fn tenant_path(&self, tenant: &Tenant) -> Result<PathBuf> {
        Ok(self.inner.placement.database_path(tenant.region.as_str(), tenant.id.as_uuid())?)
    }

    /// The tenant lifecycle.
    pub fn tenants(&self) -> Tenants {
        Tenants(self.clone())
    }

    /// Fleet migrations.
    pub fn fleet(&self) -> Fleet {
        Fleet(self.clone())
    }

    /// Exports.
    pub fn exports(&self) -> Exports {
        Exports(self.clone())
    }

    /// The durable job queue.
    pub fn jobs(&self) -> silo_jobs::Jobs {
        self.inner.jobs.clone()
    }

    /// A path under `<data_dir>/tmp` (created if needed): see [`scratch`].
    pub fn temp_path(&self, name: &str) -> Result<PathBuf> {
        let dir = self.settings().data_dir.join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| silo_storage::Error::Io {
            action: "create directory",
            path: dir.clone(),
            source: e,
        })?;
        Ok(dir.join(name))
    }

    /// The erasure ledger and erasing in a tenant file.
    pub fn erasures(&self) -> Erasures {
        Erasures(self.clone())
    }

    /// Read-only SQL on a tenant.
    pub fn queries(&self) -> Queries {
        Queries(self.clone())
    }

    /// Free space on the file system of the data directory (tenant files, `control.db`).
    pub fn disk_space(&self) -> Result<silo_storage::sqlite::DiskSpace> {
        Ok(silo_storage::sqlite::disk_space(&self.settings().data_dir)?)
    }

    /// Whether the control plane answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.inner.control.ping().await
    }

    /// The audit log, newest first: `limit` entries older than `before`, optionally only
    /// actions starting with `action`.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<control::AuditEntry>> {
        self.inner.control.audit_log(before, action, limit).await
    }

    /// Closes every handle and the control plane (graceful shutdown). Returns whether every tenant file was closed (a handle still held by work that did not
    /// finish keeps its file open until that work ends).
    pub async fn shutdown(&self) -> bool {
        self.inner.cache.clear().await;
        let closed = self.inner.cache.wait_all_closed(Duration::from_secs(10)).await;
        // Closing handed each tenant's unshipped commits over: they reach the store before the
        // process goes.
        if let Some(copies) = self.copies() {
            copies.at_stop(self, closed).await;
        }
        self.inner.control.close().await;
        closed
    }
}
