//! The backups' job kind, registered on the application's worker pool by [`register`]:
//!
//! - [`FLEET_BACKUP`]: a manual backup of every live tenant, with progress. Idempotent: a
//!   tenant with a backup newer than the job's enqueueing (an earlier run of this job got to
//!   it) is skipped.

use serde_json::json;

use crate::{BackupKind, Backups};
use silo_core::TenantRef;
use silo_jobs::{JobContext, JobError, Outcome, Workers};

/// Backs up every live tenant.
pub const FLEET_BACKUP: &str = "fleet.backup";

/// Registers the backups' job kinds.
pub fn register(workers: &mut Workers, backups: &Backups) {
    let b = backups.clone();
    workers.register(FLEET_BACKUP, move |ctx| fleet_backup(b.clone(), ctx));
}

async fn fleet_backup(backups: Backups, ctx: JobContext) -> Outcome {
    let tenants = backups.live_tenants().await?;
    let total = tenants.len() as i64;
    let (mut backed_up, mut skipped, mut failed) = (0, 0, Vec::new());
    for (done, tenant) in tenants.iter().enumerate() {
        if ctx.lost() {
            return Err(JobError::retry("no longer this run's job"));
        }
        let newest = backups.of_tenant(tenant.id).await?.into_iter().next();
        if newest.is_some_and(|b| b.created_at >= ctx.job.created_at) {
            skipped += 1;
        } else {
            let actor = format!("job:{}", ctx.job.id);
            match backups.create(&TenantRef::Id(tenant.id), BackupKind::Manual, &actor).await {
                Ok(_) => backed_up += 1,
                Err(e) => failed.push(json!({ "tenant": tenant.slug, "error": e.to_string() })),
            }
        }
        ctx.progress(done as i64 + 1, total);
    }
    Ok(json!({ "backed_up": backed_up, "skipped": skipped, "failed": failed }))
}
