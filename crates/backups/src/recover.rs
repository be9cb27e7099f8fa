//! Disaster recovery (`silo recover --from-store`): an installation rebuilt from the object
//! store and the master key alone, on an empty data directory.
//!
//! 1. [`recover_control`] writes the newest copy of `control.db` ([`super::control_copies`])
//!    into the data directory, checked. It holds every tenant, account, wrapped data key and
//!    the backup catalogue as of at most one continuous-backup interval before the loss.
//! 2. [`Backups::recover_tenants`] restores every live tenant in place to its last commit in
//!    the store: the newest snapshot and its chain's segments ([`super::continuous`]). A
//!    snapshot stored after the control plane's copy was taken is not in that copy's catalogue:
//!    it is found by listing the tenant's objects, checked, and catalogued first.
//!
//! What the store never received is lost: at most the interval's commits (and a tenant created
//! in that last interval, whose row is not in the copy).

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use silo_storage::sqlite;

use super::{Backup, BackupKind, BackupStore, Backups};
use crate::{Error, Result, Settings};
use silo_core::ids::TenantRef;
use silo_tenancy::control::Tenant;

/// What [`recover_control`] wrote.
#[derive(Debug, Serialize)]
pub struct ControlRecovered {
    /// The copy used (`control/<id>.db.zst.enc`).
    pub copy: String,
    /// When it was taken.
    pub taken_at: silo_core::Timestamp,
    /// Bytes of `control.db`.
    pub size: u64,
}

/// Writes `control.db` of `settings.data_dir` from the store's newest copy. Refuses a data
/// directory that has a control plane, and a master key that is not given (it is never
/// created here: a new one could open nothing).
pub async fn recover_control(settings: &Settings) -> Result<ControlRecovered> {
    if settings.control.url.is_some() {
        return Err(Error::invalid(
            "control",
            "the control plane is on PostgreSQL ([control] url), not in the data directory: \
             `silo recover --from-store` rebuilds an embedded control.db; PostgreSQL is restored from its own backups",
        ));
    }
    let path = settings.control_db_path();
    for existing in [path.clone(), settings.data_dir.join("control.db-wal")] {
        if existing.exists() {
            return Err(Error::invalid(
                "data directory",
                format!(
                    "{} exists: `silo recover --from-store` rebuilds an empty data directory (move this one aside first)",
                    existing.display()
                ),
            ));
        }
    }
    let master = existing_master_key(settings)?;
    let store = BackupStore::open(settings, std::sync::Arc::new(master)).await?;
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| silo_storage::Error::Io {
        action: "create directory",
        path: settings.data_dir.clone(),
        source: e,
    })?;
    let staging = settings.data_dir.join("control.db.recovering");
    let _ = std::fs::remove_file(&staging);
    let (copy, taken, size) =
        super::control_copies::fetch_newest(store.store(), &store.master, &staging).await?;
    let (from, to) = (staging.clone(), path.clone());
    tokio::task::spawn_blocking(move || sqlite::replace_database(&from, &to))
        .await
        .expect("installing control.db panicked")?;
    let taken_at = silo_core::time::utc_timestamp(taken);
    tracing::info!(copy = %copy, taken_at = %taken_at, size, "control.db recovered from the store");
    Ok(ControlRecovered { copy, taken_at, size })
}

/// The master key from `SILO_MASTER_KEY` or the key file, which must exist.
fn existing_master_key(settings: &Settings) -> Result<silo_storage::crypto::MasterKey> {
    if settings.backup.master_key.is_none() && !settings.master_key_path().exists() {
        return Err(Error::Config(format!(
            "no master key: put the installation's key file at {} (or give it with --master-key-file, or set SILO_MASTER_KEY); without it nothing in the store can be opened",
            settings.master_key_path().display()
        )));
    }
    silo_tenancy::config::load_master_key(settings)
}

/// What [`Backups::recover_tenants`] did.
#[derive(Debug, Default, Serialize)]
pub struct TenantsRecovered {
    /// Tenants restored: (slug, commits replayed after the snapshot, the moment reached).
    pub restored: Vec<(String, usize, Option<silo_core::Timestamp>)>,
    /// Snapshots found in the store but not in the control plane's copy, catalogued.
    pub adopted: usize,
    /// Tenants that could not be restored (slug, why).
    pub failed: Vec<(String, String)>,
    /// Wall time, ms.
    pub elapsed_ms: u128,
}

impl Backups {
    /// Restores every live tenant in place to its last commit in the store (see the module).
    pub async fn recover_tenants(&self, actor: &str) -> Result<TenantsRecovered> {
        let started = Instant::now();
        let tenants = self.live_tenants().await?;
        let mut run = TenantsRecovered::default();
        let mut results = futures::stream::iter(tenants)
            .map(|tenant| async move {
                let result = self.recover_tenant(&tenant, actor).await;
                (tenant, result)
            })
            .buffer_unordered(self.fleet.settings().backup.concurrency());
        while let Some((tenant, result)) = results.next().await {
            match result {
                Ok((restored, adopted)) => {
                    run.adopted += usize::from(adopted);
                    run.restored.push((tenant.slug.to_string(), restored.commits_replayed, restored.reached));
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, slug = %tenant.slug, error = %e, "recovering a tenant failed");
                    run.failed.push((tenant.slug.to_string(), e.to_string()));
                }
            }
        }
        run.restored.sort();
        run.elapsed_ms = started.elapsed().as_millis();
        Ok(run)
    }

    /// Restores a tenant this server takes over from one that stopped (see
    /// `silo_tenancy::ownership`): whatever file of it is here is stale, the store's newest
    /// snapshot and chain are the tenant.
    pub(crate) async fn take_over(&self, tenant: &Tenant) -> Result<Option<i64>> {
        let path = self.fleet.tenant_path(tenant)?;
        create_parent(&path)?;
        sqlite::remove_database_files(&path).await?;
        self.adopt_newest_snapshot(tenant).await?;
        let restored = self.restore_newest(tenant, "failover").await?;
        tracing::info!(tenant = %tenant.id, commits_replayed = restored.commits_replayed, reached = ?restored.reached, "restored from the store");
        Ok(restored.reached.map(|t| t.unix_ms()))
    }

    async fn recover_tenant(&self, tenant: &Tenant, actor: &str) -> Result<(super::restore::Restored, bool)> {
        let path = self.fleet.tenant_path(tenant)?;
        // A region on another volume may have survived: its file is newer than the store.
        if path.exists() {
            return Err(Error::invalid(
                "data directory",
                format!(
                    "{} exists (its region survived?): left as it is; move it aside to restore it from the store",
                    path.display()
                ),
            ));
        }
        let adopted = self.adopt_newest_snapshot(tenant).await?;
        create_parent(&path)?;
        let restored =
            self.restore_to(&TenantRef::Id(tenant.id), &self.fleet.control().now(), None, actor).await?;
        Ok((restored, adopted))
    }

    /// Catalogues the tenant's newest snapshot in the store when the catalogue does not know
    /// it (stored after the control plane's copy was taken), once checked like a restore
    /// checks it. Its time is its id's (a UUID v7 made just before the snapshot was read).
    /// Returns whether one was adopted.
    async fn adopt_newest_snapshot(&self, tenant: &Tenant) -> Result<bool> {
        let store = self.store().await?.store();
        let prefix = format!("tenants/{}/backups/", tenant.id);
        let newest = store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|key| {
                let id = key.strip_prefix(&prefix)?.strip_suffix(".db.zst.enc")?.to_owned();
                uuid::Uuid::parse_str(&id).ok()?;
                Some((id, key))
            })
            .max();
        let Some((id, object_key)) = newest else { return Ok(false) };
        let catalogued = self.of_tenant(tenant.id).await?;
        if catalogued.first().is_some_and(|b| b.id >= id) || catalogued.iter().any(|b| b.id == id) {
            return Ok(false);
        }
        let bytes = store.get(&object_key).await?;
        let created = uuid::Uuid::parse_str(&id)
            .ok()
            .and_then(|u| u.get_timestamp())
            .map(|t| t.to_unix())
            .map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut backup = Backup {
            id: id.clone(),
            tenant_id: tenant.id.to_string(),
            created_at: silo_core::time::utc_timestamp(created),
            kind: BackupKind::Scheduled,
            size: bytes.len() as i64,
            db_size: 0,
            sha256: silo_core::tokens::sha256_hex(&bytes),
            schema_version: 0,
            object_key,
            verified_at: None,
            verify_error: None,
            chain_until: None,
        };
        let temp = self.fleet.temp_path(&silo_tenancy::scratch::name("adopt", &id))?;
        let checked = async {
            backup.db_size = self.fetch_backup_into(tenant, &backup, &temp).await? as i64;
            backup.schema_version = silo_tenancy::schema::read_file_version(&temp)?;
            Ok::<_, Error>(())
        }
        .await;
        let _ = sqlite::remove_database_files(&temp).await;
        checked?;
        self.catalogue().insert_backup(&backup, "recover").await?;
        tracing::info!(tenant = %tenant.id, backup = %id, "a snapshot newer than the control plane's copy was catalogued");
        Ok(true)
    }
}

/// Creates the directory a tenant's file goes in.
pub(crate) fn create_parent(path: &std::path::Path) -> Result<()> {
    let dir = path.parent().expect("a database path has a parent directory");
    std::fs::create_dir_all(dir).map_err(|e| silo_storage::Error::Io {
        action: "create directory",
        path: dir.to_owned(),
        source: e,
    })?;
    Ok(())
}
