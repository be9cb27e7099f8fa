//! The fleet's job kinds, registered on the application's worker pool by [`register`]:
//!
//! - [`TENANT_PURGE`] (`{"tenant": id}`): queued by a soft delete for the end of its grace
//!   period; purges the tenant unless it was brought back (or purged) meanwhile.
//! - [`TENANT_EXPORT`] (`{"tenant": id}`): the tenant's export zip at
//!   `<data_dir>/exports/<job id>.zip`, and a download link valid for [`EXPORT_DAYS`] days
//!   (after which the zip is deleted). Idempotent: a run writes beside the zip and renames
//!   over it. Once the zip is in place it is checked against the erasure ledger and the
//!   tenant's status ([`crate::Exports::may_keep`]): an export that may hold a person erased
//!   meanwhile, or of a workspace deleted meanwhile, is discarded.

use serde_json::json;

use crate::Tenancy;
use silo_core::{TenantId, TenantRef};
use silo_jobs::{JobContext, JobError, Outcome, Workers};

/// Exports one tenant.
pub const TENANT_EXPORT: &str = "tenant.export";
/// Purges a soft-deleted tenant at the end of its grace period.
pub const TENANT_PURGE: &str = "tenant.purge";
/// How long an export (its zip and its link) is kept.
pub const EXPORT_DAYS: u64 = 7;

/// Registers the fleet's job kinds.
pub fn register(workers: &mut Workers, tenancy: &Tenancy) {
    let t = tenancy.clone();
    workers.register(TENANT_EXPORT, move |ctx| tenant_export(t.clone(), ctx));
    let t = tenancy.clone();
    workers.register(TENANT_PURGE, move |ctx| tenant_purge(t.clone(), ctx));
}

/// Idempotent: a tenant already purged is done; one brought back meanwhile is left alone; and
/// one whose current deletion is younger than the grace period is kept (a purge job of an
/// earlier deletion, run again by hand, must not cut a later deletion's grace period short).
async fn tenant_purge(tenancy: Tenancy, ctx: JobContext) -> Outcome {
    let id = payload_tenant(&ctx)?;
    let tenant = tenancy.tenant(&TenantRef::Id(id)).await?;
    let grace = std::time::Duration::from_secs(tenancy.settings().tenants.deletion_grace_days * 86_400);
    let due = tenant.updated_at.plus(grace);
    Ok(match tenant.status {
        crate::TenantStatus::Deleting if tenancy.control().now() < due => {
            json!({ "kept": tenant.slug, "status": tenant.status, "grace_period_until": due })
        }
        // By id: a purge removes the slug from the control plane, job results included.
        crate::TenantStatus::Deleting => {
            tenancy.tenants().purge(&TenantRef::Id(id), &format!("job:{}", ctx.job.id)).await?;
            json!({ "purged": id })
        }
        crate::TenantStatus::Deleted => json!({ "already_purged": id }),
        _ => json!({ "kept": tenant.slug, "status": tenant.status }),
    })
}

/// The tenant a job's payload names.
fn payload_tenant(ctx: &JobContext) -> Result<TenantId, JobError> {
    ctx.job.payload["tenant"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| JobError::fatal("the payload names no tenant id"))
}

async fn tenant_export(tenancy: Tenancy, ctx: JobContext) -> Outcome {
    let id = payload_tenant(&ctx)?;
    let exports = tenancy.exports();
    let out = exports.path(&ctx.job.id);
    ctx.progress(0, 1);
    let snapshot_at = tenancy.control().now();
    let manifest = exports.export(&TenantRef::Id(id), &out, &format!("job:{}", ctx.job.id)).await?;
    // The zip is in place: an erasure or a purge that starts from here on finds and deletes
    // it. One that was under way while the snapshot was taken may not have reached this file
    // yet: then the zip goes, and a later attempt exports the workspace as it is then.
    if let Some(why) = exports.may_keep(id, &snapshot_at).await? {
        exports
            .remove(&ctx.job.id)
            .map_err(|e| JobError::retry(format!("cannot delete {}: {e}", out.display())))?;
        let deleted = tenancy.tenant(&TenantRef::Id(id)).await?.status;
        return Err(if matches!(deleted, crate::TenantStatus::Deleting | crate::TenantStatus::Deleted) {
            JobError::fatal(format!("{why}; the export was discarded"))
        } else {
            JobError::retry(format!("{why}; the export was discarded and is made again"))
        });
    }
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(EXPORT_DAYS * 86_400);
    let download = exports.download_link(&ctx.job.id, expires).await?;
    ctx.progress(1, 1);
    Ok(json!({ "path": out, "bytes": bytes, "manifest": manifest, "download": download }))
}
