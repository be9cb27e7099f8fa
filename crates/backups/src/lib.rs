//! `silo-backups`: copies of tenants outside their files — encrypted backups and their
//! catalogue, continuous backup, verification, retention, restores (to a moment, as a new
//! tenant), recovery from the store, copies of `control.db`, the backup scheduler, and region
//! moves (which start with a backup). Above `silo-tenancy`: it reaches tenant files through
//! the fleet's handle cache, and the fleet reaches it through the [`silo_tenancy::Copies`] seam
//! it registers (a purge deletes every copy, a migration takes one first, a stop ships the
//! last commits).
//!
//! A snapshot backup is `VACUUM INTO` while the tenant serves, zstd, AES-256-GCM with the
//! tenant's data key, one object per backup in the configured store, one catalogue row per
//! stored object. Object keys are `tenants/<tenant uuid>/backups/<backup uuid>.db.zst.enc`:
//! ids only, no slug.
//!
//! # Layout
//! - [`Backups`] (this file, from [`BackupsExt::backups`]): back up, verify, prune; the
//!   [`BackupStore`] (the object store and the master key, set up on first use).
//! - [`catalogue`]: the catalogue's and the data keys' SQL (`backups`, `tenant_keys`).
//! - [`continuous`]: shipping each tenant's commits as segments of its chain, replaying them.
//! - [`restore`]: in place, as a new tenant, to a moment; [`recover`]: a data directory from
//!   the store alone; [`control_copies`]: copies of `control.db` in the store.
//! - [`retention`]: which backups expire; [`scheduler`]: the scheduler of `silo serve`.
//! - [`relocate`]: [`Relocations`], region moves; [`jobs`]: the fleet backup job.
//! - `copies`: the [`silo_tenancy::Copies`] this crate registers on the fleet.
//!
//! Errors are the fleet's ([`silo_tenancy::Error`]): every failure here is one of a tenant's
//! file, its store or the control plane, which the fleet's error already names.

pub mod catalogue;
pub mod continuous;
pub mod control_copies;
mod copies;
pub mod jobs;
pub mod recover;
pub mod relocate;
pub mod restore;
pub mod retention;
pub mod scheduler;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use silo_storage::crypto::{DataKey, MasterKey};
use silo_storage::objects::{LocalStore, ObjectStore, S3Store};
use silo_storage::sqlite;
use uuid::Uuid;

pub use catalogue::{Backup, BackupKind};
pub use relocate::Relocations;
pub use silo_tenancy::cache::changes::{ChangeTracker, DataVersion};
pub use silo_tenancy::cache::log::{Lag, Logs, TenantLog};
pub use silo_tenancy::{Error, Result};

use catalogue::Catalogue;
use silo_core::ids::{TenantId, TenantRef};
use silo_tenancy::config::BackupStoreKind;
use silo_tenancy::control::utc_now;
use silo_tenancy::{Settings, Tenancy, Tenant, TenantStatus};

/// Orphan objects (stored, never catalogued: a killed backup) younger than this are left
/// alone by `prune`, since a backup in progress has not written its row yet.
const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// Store errors in a row after which a fleet run stops trying (see [`Backups::create_all`]).
pub const STORE_FAILURES_IN_A_ROW: usize = 3;

/// The store and the master key of this process.
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore").field("store", &self.store.describe()).finish_non_exhaustive()
    }
}

impl BackupStore {
    /// Builds the configured store and checks it can be written.
    pub async fn open(settings: &Settings, master: Arc<MasterKey>) -> Result<Self> {
        let store: Arc<dyn ObjectStore> = match settings.backup.store {
            BackupStoreKind::Local => Arc::new(LocalStore::new(settings.local_objects_dir())),
            BackupStoreKind::S3 => Arc::new(S3Store::new(&settings.backup.s3)?),
        };
        silo_storage::objects::probe(store.as_ref()).await?;
        tracing::info!(store = %store.describe(), "backup store ready");
        Ok(Self { store, master })
    }

    /// A set of backups over `store` with `master` (tests, benchmarks).
    pub fn with_store(store: Arc<dyn ObjectStore>, master: MasterKey) -> Self {
        Self { store, master: Arc::new(master) }
    }

    /// The object store.
    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }
}

/// What binds a sealed object to its tenant and backup (AES-GCM associated data).
fn seal_context(tenant: TenantId, backup: &str) -> Vec<u8> {
    format!("silo/backup/v1/{tenant}/{backup}").into_bytes()
}

fn object_key(tenant: TenantId, backup: &str) -> String {
    format!("tenants/{tenant}/backups/{backup}.db.zst.enc")
}

/// The outcome of a fleet pass.
#[derive(Debug, Default, Serialize)]
pub struct BackupRun {
    /// Tenants backed up.
    pub backed_up: usize,
    /// Tenants skipped because nothing changed since their last backup.
    pub unchanged: usize,
    /// Tenants whose backup failed (slug, error).
    pub failed: Vec<(String, String)>,
    /// Bytes stored.
    pub bytes: u64,
    /// Wall time, ms.
    pub elapsed_ms: u128,
}

/// The outcome of a verification.
#[derive(Debug, Serialize)]
pub struct Verification {
    /// The backup checked.
    pub backup: Backup,
    /// Bytes of the database it restores to.
    pub restored_size: u64,
}

/// The outcome of `prune`.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Catalogued backups removed by the retention policy.
    pub expired: usize,
    /// Objects without a catalogue row (killed backups, purged tenants) removed.
    pub orphans: usize,
    /// Copies of the control plane removed by their retention policy.
    pub control_copies: usize,
}

/// Backups: the store, backing up, verifying, pruning, restoring and the scheduler. One per
/// fleet ([`Backups::of`]); cheap to clone.
#[derive(Clone)]
pub struct Backups {
    fleet: Tenancy,
    state: Arc<copies::State>,
}

/// `tenancy.backups()`: the fleet's [`Backups`].
pub trait BackupsExt {
    /// The fleet's backups (set up, and registered with the fleet, on first use).
    fn backups(&self) -> Backups;
}

impl BackupsExt for Tenancy {
    fn backups(&self) -> Backups {
        Backups::of(self)
    }
}

impl Backups {
    /// The fleet's backups: registers them with `fleet` (as its [`silo_tenancy::Copies`]) the
    /// first time.
    pub fn of(fleet: &Tenancy) -> Self {
        let state = copies::State::of(fleet);
        Self { fleet: fleet.clone(), state }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Tenancy {
        &self.fleet
    }

    fn catalogue(&self) -> Catalogue {
        Catalogue(self.fleet.control().clone())
    }

    /// The backup store and master key, set up on first use.
    pub async fn store(&self) -> Result<&BackupStore> {
        self.state
            .store
            .get_or_try_init(|| async {
                BackupStore::open(self.fleet.settings(), self.fleet.master_key().await?.clone()).await
            })
            .await
    }

    /// A tenant's backups, newest first.
    pub async fn of_tenant(&self, tenant: TenantId) -> Result<Vec<Backup>> {
        self.catalogue().backups_of(tenant).await
    }

    /// Region moves.
    pub fn relocations(&self) -> Relocations {
        Relocations(self.clone())
    }

    /// Uses `backups` instead of the configured store and key (tests, benchmarks).
    pub fn install_store(&self, store: BackupStore) -> Result<()> {
        self.state.store.set(store).map_err(|_| Error::Config("backups are already set up".into()))
    }

    /// The tenants written to since the scheduler last looked.
    pub fn changes(&self) -> &Arc<ChangeTracker> {
        self.fleet.cache().changes()
    }

    /// The tenant's data key, created when `create` and it has none.
    async fn data_key(&self, tenant: &Tenant, create: bool) -> Result<DataKey> {
        let backups = self.store().await?;
        let wrapped = match self.catalogue().wrapped_key(tenant.id).await? {
            Some(wrapped) => wrapped,
            None if tenant.status == TenantStatus::Deleted => {
                return Err(Error::KeyDestroyed(tenant.slug.to_string()));
            }
            None if create => {
                let fresh = backups.master.wrap(&DataKey::generate());
                self.catalogue().insert_wrapped_key(tenant.id, &fresh).await?
            }
            None => return Err(Error::KeyDestroyed(tenant.slug.to_string())),
        };
        // Remembered for shipping while the control plane cannot be reached (`continuous`).
        self.state.shipping.lock().insert(tenant.id, (tenant.clone(), Some(wrapped.clone())));
        self.unwrap_key(tenant, &wrapped).await
    }

    /// Unwraps a tenant's data key with the master key.
    async fn unwrap_key(&self, tenant: &Tenant, wrapped: &[u8]) -> Result<DataKey> {
        self.store().await?.master.unwrap_key(wrapped).map_err(|_| {
            Error::Config(format!(
                "the data key of tenant `{}` cannot be unwrapped: wrong master key (SILO_MASTER_KEY or backup.master_key_file)",
                tenant.slug
            ))
        })
    }

    /// Backs up one tenant now.
    pub async fn create(&self, tenant: &TenantRef, kind: BackupKind, actor: &str) -> Result<Backup> {
        let tenant = self.fleet.tenant(tenant).await?;
        self.backup_known(&tenant, kind, actor).await
    }

    /// Snapshot → compress → encrypt → store → catalogue, starting a new chain of continuous
    /// backup ([`continuous`]). The object is complete in the store before its row exists, so
    /// a crash never leaves a row without its object.
    #[tracing::instrument(name = "tenant_backup", skip_all, fields(tenant = %tenant.id, kind = %kind))]
    pub(crate) async fn backup_known(
        &self,
        tenant: &Tenant,
        kind: BackupKind,
        actor: &str,
    ) -> Result<Backup> {
        self.backup_in_chain(tenant, kind, actor).await
    }

    /// [`Backups::backup_known`]'s snapshot. With `log` (the tenant's, its shipping lock held)
    /// the commits not shipped yet are taken at the snapshot and returned (they close the old
    /// chain); if the snapshot fails they go back to the log.
    pub(crate) async fn snapshot(
        &self,
        tenant: &Tenant,
        kind: BackupKind,
        actor: &str,
        log: Option<&Arc<TenantLog>>,
    ) -> Result<(Backup, Vec<silo_storage::segment::TimedCommit>)> {
        if tenant.status == TenantStatus::Deleted {
            return Err(Error::Gone(tenant.slug.to_string()));
        }
        let key = self.data_key(tenant, true).await?;
        let id = Uuid::now_v7().to_string();
        let source = self.fleet.tenant_path(tenant)?;
        let context = seal_context(tenant.id, &id);
        // The copy is taken on the file's owning connection; compressing and sealing it do not
        // need the connection, so they run after the tenant's turn is given back. Its time is
        // read holding the connection: every commit before it is in the copy, none after.
        let (reader, db) = (log.cloned(), source.clone());
        let (plain, tail, created_at) = self
            .fleet
            .cache()
            .with_file_told(tenant.id, source, move |conn, live| {
                let plain = sqlite::snapshot_bytes(conn)?;
                let tail = match &reader {
                    Some(log) => log.at_snapshot(&db, live)?,
                    None => Vec::new(),
                };
                Ok((plain, tail, utc_now()))
            })
            .await
            .inspect_err(|_| {
                // Whatever was taken from the log is not in the store: start afresh.
                if log.is_some() {
                    self.logs().written_outside(tenant.id);
                }
            })?;
        let stored = self.store_snapshot(tenant, kind, actor, id, key, context, plain, created_at).await;
        match stored {
            Ok(backup) => Ok((backup, tail)),
            Err(e) => {
                if let Some(log) = log {
                    log.put_back(tail);
                }
                Err(e)
            }
        }
    }

    /// Compresses, seals, stores and catalogues a snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn store_snapshot(
        &self,
        tenant: &Tenant,
        kind: BackupKind,
        actor: &str,
        id: String,
        key: DataKey,
        context: Vec<u8>,
        plain: Vec<u8>,
        created_at: silo_core::Timestamp,
    ) -> Result<Backup> {
        let packed = tokio::task::spawn_blocking(move || {
            let version = schema_version_of(&plain)?;
            let packed = silo_storage::backup::pack(&plain, &key, &context)?;
            Ok::<_, Error>((packed, version))
        })
        .await
        .expect("a backup task panicked");
        let (packed, schema_version) = packed?;
        let backup = Backup {
            object_key: object_key(tenant.id, &id),
            id,
            tenant_id: tenant.id.to_string(),
            created_at,
            kind,
            size: packed.bytes.len() as i64,
            db_size: packed.plain_size as i64,
            sha256: packed.sha256,
            schema_version,
            verified_at: None,
            verify_error: None,
            chain_until: None,
        };
        let store = self.store().await?.store();
        store.put(&backup.object_key, packed.bytes).await?;
        if let Err(e) = self.catalogue().insert_backup(&backup, actor).await {
            // Without its row the object is an orphan: remove it now rather than at the next prune.
            let _ = store.delete(&backup.object_key).await;
            return Err(e);
        }
        tracing::info!(backup = %backup.id, size = backup.size, "backup stored");
        Ok(backup)
    }

    /// Backs up many tenants, `backup.concurrency` at a time; failures are collected, not
    /// fatal. After [`STORE_FAILURES_IN_A_ROW`] store errors in a row the rest of the run is
    /// skipped (reported as failed): a store that is down would otherwise cost every tenant
    /// its full retry budget.
    pub async fn create_all(&self, tenants: Vec<Tenant>, kind: BackupKind, actor: &str) -> BackupRun {
        let started = std::time::Instant::now();
        let mut run = BackupRun::default();
        let store_failures = std::sync::atomic::AtomicUsize::new(0);
        let store_failures = &store_failures;
        let mut results = futures::stream::iter(tenants)
            .map(|tenant| async move {
                if store_failures.load(std::sync::atomic::Ordering::Relaxed) >= STORE_FAILURES_IN_A_ROW {
                    let skipped = Error::Storage(silo_storage::Error::ObjectStore(
                        "skipped: the backup store failed repeatedly in this run".into(),
                    ));
                    return (tenant, Err(skipped));
                }
                let result = self.backup_known(&tenant, kind, actor).await;
                match &result {
                    Err(Error::Storage(silo_storage::Error::ObjectStore(_))) => {
                        store_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => store_failures.store(0, std::sync::atomic::Ordering::Relaxed),
                    Err(_) => {}
                }
                (tenant, result)
            })
            .buffer_unordered(self.fleet.settings().backup.concurrency());
        while let Some((tenant, result)) = results.next().await {
            match result {
                Ok(backup) => {
                    run.backed_up += 1;
                    run.bytes += backup.size as u64;
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, slug = %tenant.slug, error = %e, "backup failed");
                    run.failed.push((tenant.slug.to_string(), e.to_string()));
                }
            }
        }
        run.elapsed_ms = started.elapsed().as_millis();
        run
    }

    /// Every live (active or suspended) tenant this server serves (each server of a cluster
    /// backs up its own).
    pub async fn live_tenants(&self) -> Result<Vec<Tenant>> {
        let mut tenants = self.fleet.control().live().await?;
        tenants.retain(|t| {
            matches!(t.status, TenantStatus::Active | TenantStatus::Suspended) && self.fleet.is_here(t.id)
        });
        Ok(tenants)
    }

    /// One backup of a tenant: the given id, or its newest.
    pub async fn find(&self, tenant: &Tenant, id: Option<&str>) -> Result<Backup> {
        match id {
            Some(id) => self.catalogue().backup(tenant.id, id).await,
            None => self
                .catalogue()
                .backups_of(tenant.id)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::NoBackup(tenant.slug.to_string())),
        }
    }

    /// Fetches a backup, checks its checksum, decrypts and decompresses it into a new file at
    /// `dest`, and checks the result's integrity and schema version. On failure `dest` does
    /// not exist. Returns the file's size.
    pub(crate) async fn fetch_backup_into(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        dest: &Path,
    ) -> Result<u64> {
        self.fetch_backup_checked(tenant, backup, dest, true).await
    }

    /// [`Backups::fetch_backup_into`]; without `integrity` the caller checks the file itself
    /// (after replaying commits onto it).
    pub(crate) async fn fetch_backup_checked(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        dest: &Path,
        integrity: bool,
    ) -> Result<u64> {
        let key = self.data_key(tenant, false).await?;
        let bytes = self.store().await?.store().get(&backup.object_key).await?;
        let context = seal_context(tenant.id, &backup.id);
        let (sha256, dest) = (backup.sha256.clone(), dest.to_owned());
        let latest = silo_tenancy::schema::latest_version(self.fleet.migrations());
        tokio::task::spawn_blocking(move || {
            let size =
                silo_storage::backup::unpack_checked(&bytes, &sha256, &key, &context, &dest, integrity)?;
            let checked = silo_tenancy::schema::read_file_version(&dest).and_then(|version| {
                if version > latest {
                    return Err(Error::Schema(format!(
                        "the backup is at schema version {version}, newer than this binary's {latest}"
                    )));
                }
                Ok(size)
            });
            if checked.is_err() {
                let _ = sqlite::remove_database_files_sync(&dest);
            }
            checked
        })
        .await
        .expect("a restore task panicked")
    }

    /// Restores a backup to a temporary file, checks checksum, decryption, integrity and
    /// schema version, records the outcome and removes the file. Changes no tenant.
    pub async fn verify(&self, tenant: &TenantRef, id: Option<&str>) -> Result<Verification> {
        let tenant = self.fleet.tenant(tenant).await?;
        let backup = self.find(&tenant, id).await?;
        self.verify_known(&tenant, backup).await
    }

    pub(crate) async fn verify_known(&self, tenant: &Tenant, backup: Backup) -> Result<Verification> {
        let temp = self.fleet.temp_path(&silo_tenancy::scratch::name("verify", &backup.id))?;
        let result = self.fetch_backup_into(tenant, &backup, &temp).await;
        let _ = sqlite::remove_database_files(&temp).await;
        // A check this machine could not make (a full disk) says nothing of the backup: it is
        // not recorded against it.
        if let Err(e) = &result
            && e.kind() == silo_core::ErrorKind::DiskFull
        {
            return Err(Error::Unavailable(format!("backup {} could not be checked: {e}", backup.id)));
        }
        let error = result.as_ref().err().map(|e| e.to_string());
        self.catalogue().record_verification(&backup.id, error.as_deref()).await?;
        let restored_size = result?;
        Ok(Verification { backup, restored_size })
    }

    /// Applies the retention policy to every tenant's backups and removes orphan objects.
    pub async fn prune(&self) -> Result<PruneReport> {
        let settings = &self.fleet.settings().backup;
        let keep_all = Duration::from_secs(settings.keep_all_hours.saturating_mul(3600));
        let all = self.catalogue().all_backups().await?;
        let mut by_tenant: std::collections::BTreeMap<&str, Vec<Backup>> = Default::default();
        for backup in &all {
            by_tenant.entry(&backup.tenant_id).or_default().push(backup.clone());
        }
        let now = SystemTime::now();
        let store = self.store().await?.store();
        let mut report = PruneReport::default();
        let mut gone = Vec::new();
        for backups in by_tenant.values() {
            for id in retention::expired(backups, now, keep_all, settings.keep_daily_days) {
                let backup = backups.iter().find(|b| b.id == id).expect("expired ids come from the list");
                // The chain's segments first: a restore never finds segments without their snapshot.
                let tenant: TenantId = backup.tenant_id.parse()?;
                for key in store.list(&continuous::chain_prefix(tenant, &id)).await? {
                    store.delete(&key).await?;
                }
                store.delete(&backup.object_key).await?;
                gone.push(id);
            }
        }
        // Rows go after their objects: a crash in between leaves rows whose objects are gone,
        // which the next prune removes again (deleting a missing object is fine).
        self.catalogue().delete_backups(&gone).await?;
        report.expired = gone.len();
        report.control_copies = self.prune_control_copies(now).await?;
        let catalogued: std::collections::HashSet<&str> = all.iter().map(|b| b.object_key.as_str()).collect();
        let gone_now: std::collections::HashSet<&str> = gone.iter().map(String::as_str).collect();
        let live: std::collections::HashSet<&str> =
            all.iter().map(|b| b.id.as_str()).filter(|id| !gone_now.contains(id)).collect();
        for key in store.list("tenants/").await? {
            let orphan = match chain_of(&key) {
                // A segment is an orphan when its chain's snapshot is (the id carries its time).
                Some(chain) => !live.contains(chain) && is_stale_orphan(chain, now),
                None => !catalogued.contains(key.as_str()) && is_stale_orphan(&key, now),
            };
            if orphan {
                store.delete(&key).await?;
                report.orphans += 1;
            }
        }
        Ok(report)
    }

    /// Deletes every object of a tenant from the store; returns the keys deleted.
    pub(crate) async fn delete_tenant_objects(&self, tenant: TenantId) -> Result<Vec<String>> {
        let store = self.store().await?.store();
        let mut deleted = Vec::new();
        for key in store.list(&format!("tenants/{tenant}/")).await? {
            store.delete(&key).await?;
            deleted.push(key);
        }
        Ok(deleted)
    }
}

/// The schema version in a snapshot's header (`PRAGMA user_version`: a big-endian 32-bit
/// integer at byte 60 of the file).
fn schema_version_of(snapshot: &[u8]) -> Result<i64> {
    let bytes: [u8; 4] = snapshot.get(60..64).and_then(|b| b.try_into().ok()).ok_or_else(|| {
        Error::Schema(format!("a snapshot of {} bytes has no database header", snapshot.len()))
    })?;
    Ok(i64::from(i32::from_be_bytes(bytes)))
}

/// The chain (snapshot id) of a segment's key, `tenants/<tenant>/chains/<id>/<segment>`.
fn chain_of(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("tenants"), Some(_), Some("chains"), Some(chain), Some(_)) => Some(chain),
        _ => None,
    }
}

/// An uncatalogued object whose backup id (a UUID v7, which carries its creation time) is
/// older than [`ORPHAN_GRACE`]; objects whose name is not such an id are left alone.
fn is_stale_orphan(key: &str, now: SystemTime) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    let id = name.split('.').next().unwrap_or_default();
    let Some((seconds, _)) = Uuid::parse_str(id).ok().and_then(|u| u.get_timestamp()).map(|t| t.to_unix())
    else {
        return false;
    };
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    now.duration_since(created).is_ok_and(|age| age > ORPHAN_GRACE)
}
