//! Region moves: `silo tenant move SLUG --region R`.
//!
//! 1. A `pre-move` backup while the tenant serves (the way back if anything goes wrong later).
//! 2. Lease: in-flight requests finish, new ones get `503` until the move ends.
//! 3. Checkpoint the WAL into the main file, copy that file into the new region's root,
//!    fsync, check that the copy's SHA-256 equals the original's.
//! 4. Switch the region in the control plane (with an audit entry).
//! 5. Release the lease, then remove the old files.
//!
//! The tenant is unavailable only for steps 2–4; a failure before step 4 removes the copy and
//! leaves the tenant where it was.

use std::time::{Duration, Instant};

use serde::Serialize;
use silo_storage::sqlite;

use crate::{Backup, BackupKind, Backups, Error, Result};
use silo_core::ids::TenantRef;
use silo_tenancy::{Tenant, TenantStatus};

/// What a move did.
#[derive(Debug, Serialize)]
pub struct Moved {
    /// The tenant, now in its new region.
    pub tenant: Tenant,
    /// The region it left.
    pub from: silo_storage::RegionName,
    /// The backup taken before the move.
    pub backup: Backup,
    /// Bytes copied.
    pub bytes: u64,
    /// How long the tenant was unavailable (lease held), ms.
    pub unavailable_ms: f64,
}

/// Moves of a tenant between regions (from [`Backups::relocations`]).
#[derive(Clone)]
pub struct Relocations(pub(crate) Backups);

impl Relocations {
    /// Moves a tenant's file to another region.
    #[tracing::instrument(name = "tenant_move", skip_all, fields(tenant = %tenant, region))]
    pub async fn relocate(&self, tenant: &TenantRef, region: &str, actor: &str) -> Result<Moved> {
        let tenant = self.0.fleet().tenant(tenant).await?;
        if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
            let status = tenant.status.to_string();
            return Err(Error::InvalidTransition { tenant: tenant.slug.to_string(), action: "move", status });
        }
        if tenant.region.as_str() == region {
            return Err(Error::invalid(
                "region",
                format!("tenant `{}` is already in region `{region}`", tenant.slug),
            ));
        }
        let from_path = self.0.fleet().tenant_path(&tenant)?;
        let to_path = self.0.fleet().placement().database_path(region, tenant.id.as_uuid())?;
        let backup = self.0.backup_known(&tenant, BackupKind::PreMove, actor).await?;

        let lease = self.0.fleet().cache().lease(tenant.id).await?;
        let started = Instant::now();
        let tuning = self.0.fleet().settings().tenant_tuning();
        let (source, dest) = (from_path.clone(), to_path.clone());
        let copied = tokio::task::spawn_blocking(move || sqlite::copy_quiescent(&source, &dest, tuning))
            .await
            .expect("a move task panicked");
        let bytes = copied?;
        let detail = serde_json::json!({
            "slug": tenant.slug, "from": tenant.region, "to": region, "bytes": bytes, "backup": backup.id,
        });
        if let Err(e) = self.0.fleet().control().set_region(tenant.id, region, actor, &detail).await {
            let _ = sqlite::remove_database_files(&to_path).await;
            return Err(e);
        }
        self.0.fleet().forget_tenants();
        let unavailable = started.elapsed();
        drop(lease);
        if let Err(e) = sqlite::remove_database_files(&from_path).await {
            // The tenant is already served from its new region; a leftover is only disk space.
            tracing::error!(path = %from_path.display(), error = %e, "removing the old files of a moved tenant failed");
        }
        tracing::info!(from = %tenant.region, to = region, bytes, unavailable_ms = unavailable.as_millis() as u64, "tenant moved");
        let from = tenant.region.clone();
        let tenant = self.0.fleet().control().tenant_by_id(tenant.id).await?;
        Ok(Moved { tenant, from, backup, bytes, unavailable_ms: millis(unavailable) })
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
