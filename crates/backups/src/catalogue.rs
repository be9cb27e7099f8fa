//! The backup catalogue and the wrapped data keys, both in the control plane
//! (`migrations/control/0005_backups.sql`; this crate owns the `backups` and `tenant_keys`
//! tables, see `migrations/control/owners.toml`).

use std::collections::HashMap;

use serde::Serialize;

use silo_tenancy::ControlPlane;

use crate::{Error, Result};
use silo_core::db;
use silo_core::ids::TenantId;

/// Why a backup was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// By the scheduler in `silo serve`.
    Scheduled,
    /// By an operator (`silo backup create`, "Back up now").
    Manual,
    /// By `silo migrate`, before a migration changed the file.
    PreMigration,
    /// By `silo tenant move`, before the file left its region.
    PreMove,
}

impl BackupKind {
    /// The catalogue's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::PreMigration => "pre-migration",
            Self::PreMove => "pre-move",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "scheduled" => Self::Scheduled,
            "manual" => Self::Manual,
            "pre-migration" => Self::PreMigration,
            "pre-move" => Self::PreMove,
            other => return Err(Error::Config(format!("unknown backup kind `{other}` in control.db"))),
        })
    }
}

impl TryFrom<String> for BackupKind {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        Self::parse(&stored)
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of the catalogue.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Backup {
    /// Backup id (UUID v7).
    pub id: String,
    /// The tenant.
    pub tenant_id: String,
    /// When the snapshot was taken (UTC).
    pub created_at: silo_core::Timestamp,
    /// Why.
    #[sqlx(try_from = "String")]
    pub kind: BackupKind,
    /// Bytes of the stored (compressed, encrypted) object.
    pub size: i64,
    /// Bytes of the database it restores to.
    pub db_size: i64,
    /// SHA-256 of the stored object.
    pub sha256: String,
    /// The tenant's schema version in the snapshot.
    pub schema_version: i64,
    /// Where the object is in the store (ids only: no slug, no personal data).
    pub object_key: String,
    /// When a verification last restored it successfully.
    pub verified_at: Option<String>,
    /// What the last verification found wrong.
    pub verify_error: Option<String>,
    /// How far its chain of continuous backup reaches, once a newer snapshot closed it
    /// (`None`: open, or no chain; see `migrations/control/0013_backup_chains.sql`).
    pub chain_until: Option<silo_core::Timestamp>,
}

impl Backup {
    fn from_row(row: &db::Row) -> Result<Self> {
        Ok(row.decode::<Self>()?)
    }
}

/// The SQL of the catalogue and the data keys, on the control plane's pools.
#[derive(Clone)]
pub(crate) struct Catalogue(pub(crate) ControlPlane);

/// What a purge removes of a tenant here, in the purge's transaction (`?1`: the tenant's id).
pub(crate) const PURGE_STATEMENTS: &[&str] =
    &["DELETE FROM backups WHERE tenant_id = ?1", "DELETE FROM tenant_keys WHERE tenant_id = ?1"];

impl Catalogue {
    /// The tenant's wrapped data key, if it has one.
    pub(crate) async fn wrapped_key(&self, tenant: TenantId) -> Result<Option<Vec<u8>>> {
        let row = db::query("SELECT wrapped FROM tenant_keys WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_optional(self.0.reader())
            .await?;
        Ok(row.map(|r| r.try_get("wrapped")).transpose()?)
    }

    /// Stores a wrapped data key unless the tenant has one already; returns the one in force.
    pub(crate) async fn insert_wrapped_key(&self, tenant: TenantId, wrapped: &[u8]) -> Result<Vec<u8>> {
        db::query(
            "INSERT INTO tenant_keys (tenant_id, wrapped, created_at) VALUES (?, ?, ?)
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(wrapped)
        .bind(self.0.now().as_str().to_owned())
        .execute(self.0.writer())
        .await?;
        let row = db::query("SELECT wrapped FROM tenant_keys WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(self.0.writer())
            .await?;
        Ok(row.try_get("wrapped")?)
    }

    /// Records how far a backup's chain reaches (a newer snapshot closed it).
    pub(crate) async fn close_chain(&self, backup: &str, until: &silo_core::Timestamp) -> Result<()> {
        db::query("UPDATE backups SET chain_until = ?2 WHERE id = ?1 AND chain_until IS NULL")
            .bind(backup)
            .bind(until)
            .execute(self.0.writer())
            .await?;
        Ok(())
    }

    /// Records a stored backup (its object is already in the store).
    pub(crate) async fn insert_backup(&self, backup: &Backup, actor: &str) -> Result<()> {
        let mut tx = self.0.writer().begin().await?;
        db::query(
            "INSERT INTO backups (id, tenant_id, created_at, kind, size, db_size, sha256, schema_version, object_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&backup.id)
        .bind(&backup.tenant_id)
        .bind(&backup.created_at)
        .bind(backup.kind.as_str())
        .bind(backup.size)
        .bind(backup.db_size)
        .bind(&backup.sha256)
        .bind(backup.schema_version)
        .bind(&backup.object_key)
        .execute(&mut *tx)
        .await?;
        // Scheduled backups are routine; the audit log records the ones someone asked for.
        if backup.kind != BackupKind::Scheduled {
            let tenant: TenantId =
                backup.tenant_id.parse().map_err(|_| Error::NotFound(backup.tenant_id.clone()))?;
            let detail = serde_json::json!({ "backup": backup.id, "kind": backup.kind, "size": backup.size });
            silo_core::audit::record(&mut tx, &self.0.now(), actor, "backup.create", Some(tenant), &detail)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's backups, newest first.
    pub(crate) async fn backups_of(&self, tenant: TenantId) -> Result<Vec<Backup>> {
        let rows = db::query("SELECT * FROM backups WHERE tenant_id = ? ORDER BY created_at DESC, id DESC")
            .bind(tenant.to_string())
            .fetch_all(self.0.reader())
            .await?;
        rows.iter().map(Backup::from_row).collect()
    }

    /// One backup of the tenant ([`Error::UnknownBackup`] if it has none with that id).
    pub(crate) async fn backup(&self, tenant: TenantId, id: &str) -> Result<Backup> {
        let row = db::query("SELECT * FROM backups WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(id)
            .fetch_optional(self.0.reader())
            .await?
            .ok_or_else(|| Error::UnknownBackup(id.to_owned()))?;
        Backup::from_row(&row)
    }

    /// Every backup (retention, orphan detection).
    pub(crate) async fn all_backups(&self) -> Result<Vec<Backup>> {
        let rows = db::query("SELECT * FROM backups ORDER BY tenant_id, created_at DESC")
            .fetch_all(self.0.reader())
            .await?;
        rows.iter().map(Backup::from_row).collect()
    }

    /// A random sample of backups (daily verification).
    pub(crate) async fn sample_backups(&self, count: usize) -> Result<Vec<Backup>> {
        let rows = db::query("SELECT * FROM backups ORDER BY random() LIMIT ?")
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .fetch_all(self.0.reader())
            .await?;
        rows.iter().map(Backup::from_row).collect()
    }

    /// Records a verification's outcome.
    pub(crate) async fn record_verification(&self, id: &str, error: Option<&str>) -> Result<()> {
        db::query(
            "UPDATE backups SET verified_at = CASE WHEN ?1 IS NULL THEN ?3 ELSE verified_at END, verify_error = ?1
             WHERE id = ?2",
        )
        .bind(error)
        .bind(id)
        .bind(self.0.now().as_str().to_owned())
        .execute(self.0.writer())
        .await?;
        Ok(())
    }

    /// Removes catalogue rows (their objects are already deleted).
    pub(crate) async fn delete_backups(&self, ids: &[String]) -> Result<()> {
        let mut tx = self.0.writer().begin().await?;
        for id in ids {
            db::query("DELETE FROM backups WHERE id = ?").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The time of each tenant's newest backup (tenants without one are absent).
    pub(crate) async fn last_backups(&self) -> Result<HashMap<TenantId, String>> {
        let rows = db::query("SELECT tenant_id, max(created_at) AS at FROM backups GROUP BY tenant_id")
            .fetch_all(self.0.reader())
            .await?;
        let mut last = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("tenant_id")?;
            match id.parse() {
                Ok(tenant) => {
                    last.insert(tenant, row.try_get("at")?);
                }
                // One damaged row must not stop every tenant's backups.
                Err(_) => tracing::warn!(tenant = %id, "a backup row names no valid tenant id"),
            }
        }
        Ok(last)
    }
}
