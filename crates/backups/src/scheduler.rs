//! The backup scheduler of `silo serve`: every `backup.interval` it backs up the tenants that
//! changed since their last backup, applies the retention policy, and once a day restores a
//! random sample of backups to temporary files to prove they still restore.
//!
//! A tenant counts as changed when a commit hook marked it ([`super::ChangeTracker`]), when it
//! has no backup yet, or — on the first pass after start only — when its files were modified
//! after its newest backup (writes made while no server ran, or marks lost with a killed
//! process). A failed backup is marked again, so the next pass retries it.
//!
//! Only the first pass looks at the whole fleet ([`Backups::scheduled_pass`]). Later passes
//! ([`Scheduler::pass`]) cost what changed: the marks, and the tenants added since the last
//! pass (a rowid range of `tenants`, e.g. created by the CLI). A pass with nothing to do reads
//! one index entry and logs nothing; pruning runs at most every [`PRUNE_EVERY`] (retention
//! counts in hours and days, and listing the store costs a request per thousand objects).

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Backups;
use super::{BackupKind, BackupRun};
use crate::Result;
use silo_tenancy::control::utc_timestamp;

/// How often the sample verification runs.
const VERIFY_EVERY: Duration = Duration::from_secs(24 * 3600);

/// How often retention and orphan pruning run.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The outcome of the last scheduler round, for the console and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchedulerStatus {
    /// When the last pass finished (UTC).
    pub last_pass_at: Option<silo_core::Timestamp>,
    /// Tenants backed up by it.
    pub backed_up: usize,
    /// Tenants it skipped as unchanged.
    pub unchanged: usize,
    /// Its failures (slug, error).
    pub failed: Vec<(String, String)>,
    /// Backups the last verification checked, and how many of them failed.
    pub verified: usize,
    /// Failures of the last verification (backup id, error).
    pub verify_failures: Vec<(String, String)>,
    /// A pass that could not run at all (control plane or store unreachable).
    pub error: Option<String>,
}

impl SchedulerStatus {
    /// The status as Prometheus gauges (`silo_backup_…`).
    pub fn to_prometheus(&self) -> String {
        let gauges = [
            ("last_pass_backed_up", "Tenants backed up by the last scheduled pass.", self.backed_up),
            ("last_pass_unchanged", "Tenants the last pass skipped as unchanged.", self.unchanged),
            ("last_pass_failed", "Tenants whose backup failed in the last pass.", self.failed.len()),
            (
                "last_pass_error",
                "1 when the last pass could not run at all.",
                usize::from(self.error.is_some()),
            ),
            ("last_verify_checked", "Backups restored and checked by the last verification.", self.verified),
            ("last_verify_failed", "Backups the last verification found bad.", self.verify_failures.len()),
        ];
        gauges
            .iter()
            .map(|(name, help, value)| {
                format!("# HELP silo_backup_{name} {help}\n# TYPE silo_backup_{name} gauge\nsilo_backup_{name} {value}\n")
            })
            .collect()
    }
}

impl Backups {
    /// Backs up every live tenant that changed since its last backup (see the module docs);
    /// `check_files` adds the file-time comparison of the first pass.
    pub async fn scheduled_pass(&self, check_files: bool) -> Result<BackupRun> {
        let marked = self.changes().take();
        let result = self.scheduled_pass_with(&marked, check_files).await;
        if result.is_err() {
            marked.iter().for_each(|&id| self.changes().mark(id));
        }
        result
    }

    async fn scheduled_pass_with(
        &self,
        marked: &HashSet<silo_core::TenantId>,
        check_files: bool,
    ) -> Result<BackupRun> {
        // A store that cannot be set up fails the pass at once (and every mark is kept).
        self.store().await?;
        // One map lookup per tenant: a pass over 100,000 tenants must not compare every pair.
        let last: std::collections::HashMap<_, _> = self.catalogue().last_backups().await?;
        let tenants = self.live_tenants().await?;
        let mut due = Vec::new();
        let mut unchanged = 0;
        for tenant in tenants {
            let changed = match last.get(&tenant.id).map(String::as_str) {
                None => true,
                Some(_) if marked.contains(&tenant.id) => true,
                Some(at) => {
                    check_files && self.fleet.tenant_path(&tenant).is_ok_and(|p| modified_after(&p, at))
                }
            };
            if changed {
                due.push(tenant);
            } else {
                unchanged += 1;
            }
        }
        let mut run = self.back_up_due(due).await;
        run.unchanged = unchanged;
        Ok(run)
    }

    /// Backs up `due` as scheduled backups; failed tenants are marked for the next pass.
    async fn back_up_due(&self, due: Vec<silo_tenancy::Tenant>) -> BackupRun {
        let ids: std::collections::HashMap<String, silo_core::TenantId> =
            due.iter().map(|t| (t.slug.to_string(), t.id)).collect();
        let run = self.create_all(due, BackupKind::Scheduled, "scheduler").await;
        for (slug, _) in &run.failed {
            if let Some(&id) = ids.get(slug) {
                self.changes().mark(id);
            }
        }
        run
    }

    /// Restores `count` random backups to temporary files and checks them; returns how many
    /// were checked and the failures (backup id, error).
    pub async fn verify_sample(&self, count: usize) -> Result<(usize, Vec<(String, String)>)> {
        let sample = self.catalogue().sample_backups(count).await?;
        let mut failures = Vec::new();
        let checked = sample.len();
        for backup in sample {
            let id = backup.id.clone();
            let tenant: silo_core::TenantId = match backup.tenant_id.parse() {
                Ok(tenant) => tenant,
                Err(_) => continue,
            };
            let outcome = async {
                let tenant = self.fleet.control().tenant_by_id(tenant).await?;
                self.verify_known(&tenant, backup).await
            }
            .await;
            if let Err(e) = outcome {
                tracing::error!(backup = %id, error = %e, "backup verification failed");
                failures.push((id, e.to_string()));
            }
        }
        Ok((checked, failures))
    }

    /// The scheduler status of this process.
    pub fn scheduler_status(&self) -> SchedulerStatus {
        self.state.scheduler_status.lock().clone()
    }

    /// Runs the scheduler until `stop` completes (the application stopping).
    pub async fn run_scheduler(self, interval: Duration, stop: impl Future<Output = ()>) {
        let mut scheduler = Scheduler::new(self.clone());
        tokio::pin!(stop);
        loop {
            // A round in progress finishes (each backup is all-or-nothing anyway); the stop is
            // heard between rounds.
            scheduler.round().await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = &mut stop => {
                    tracing::info!("backup scheduler stopped");
                    return;
                }
            }
        }
    }
}

/// The scheduler's memory between passes.
pub struct Scheduler {
    backups: Backups,
    /// The newest tenant row seen (`None` until the first, whole-fleet pass succeeded).
    seen: Option<i64>,
    /// Live tenants: counted by the first pass and at every prune, plus those added since (a
    /// count over the fleet costs ~50 ms at 100,000 tenants, too much for every pass).
    live: usize,
    last_prune: Option<Instant>,
    last_verify: Option<Instant>,
}

impl Scheduler {
    /// A scheduler whose first pass looks at the whole fleet.
    pub fn new(backups: Backups) -> Self {
        Self { backups, seen: None, live: 0, last_prune: None, last_verify: None }
    }

    /// One pass: the whole fleet the first time (file times included), then only the marked
    /// tenants and those added since the previous pass.
    pub async fn pass(&mut self) -> Result<BackupRun> {
        let (b, t) = (&self.backups, self.backups.fleet());
        let Some(seen) = self.seen else {
            // Read the watermark first: a tenant added during the full pass is seen again
            // next time rather than missed.
            let watermark = t.control().tenant_sequence().await?;
            let run = b.scheduled_pass(true).await?;
            self.seen = Some(watermark);
            self.live = run.backed_up + run.unchanged + run.failed.len();
            return Ok(run);
        };
        let started = Instant::now();
        let marked = b.changes().take();
        let outcome = async {
            let (added, newest) = t.control().live_tenants_after(seen).await?;
            let live = self.live + added.len();
            if marked.is_empty() && added.is_empty() {
                return Ok((BackupRun { unchanged: live, ..BackupRun::default() }, newest, live));
            }
            b.store().await?;
            let ids: Vec<_> = marked.iter().copied().collect();
            let mut due = t.control().live_tenants_among(&ids).await?;
            due.extend(added.into_iter().filter(|a| !marked.contains(&a.id)));
            let mut run = b.back_up_due(due).await;
            run.unchanged = live.saturating_sub(run.backed_up + run.failed.len());
            Ok((run, newest, live))
        }
        .await;
        match outcome {
            Ok((mut run, newest, live)) => {
                self.seen = Some(newest);
                self.live = live;
                run.elapsed_ms = started.elapsed().as_millis();
                Ok(run)
            }
            Err(e) => {
                marked.iter().for_each(|&id| b.changes().mark(id));
                Err(e)
            }
        }
    }

    /// A pass, pruning when due, the daily verification when due, and the status update.
    pub async fn round(&mut self) {
        let b = self.backups.clone();
        let mut status = SchedulerStatus { last_pass_at: None, ..b.scheduler_status() };
        match self.pass().await {
            Ok(run) => {
                if !run.failed.is_empty() {
                    tracing::warn!(
                        failed = run.failed.len(),
                        "scheduled backups failed; they are retried next pass"
                    );
                }
                // One line when something was done; an idle pass says nothing.
                if run.backed_up + run.failed.len() > 0 {
                    tracing::info!(
                        backed_up = run.backed_up,
                        unchanged = run.unchanged,
                        failed = run.failed.len(),
                        elapsed_ms = run.elapsed_ms as u64,
                        "backup pass"
                    );
                }
                status.backed_up = run.backed_up;
                status.unchanged = run.unchanged;
                status.failed = run.failed;
                status.error = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "backup pass failed; retrying next interval");
                status.error = Some(e.to_string());
            }
        }
        if self.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            match b.prune().await {
                Ok(report) => {
                    if report.expired + report.orphans > 0 {
                        tracing::info!(expired = report.expired, orphans = report.orphans, "backups pruned");
                    }
                    self.last_prune = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "pruning backups failed"),
            }
            // Deletions since the first pass are not seen by the passes: recount now and then.
            if self.seen.is_some()
                && let Ok(live) = b.fleet().control().live_tenant_count().await
            {
                self.live = live;
            }
        }
        if self.last_verify.is_none_or(|at| at.elapsed() >= VERIFY_EVERY) {
            match b.verify_sample(b.fleet().settings().backup.verify_sample).await {
                Ok((checked, failures)) => {
                    tracing::info!(checked, failed = failures.len(), "backup sample verified");
                    status.verified = checked;
                    status.verify_failures = failures;
                    self.last_verify = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "backup verification could not run"),
            }
        }
        status.last_pass_at = Some(utc_timestamp(std::time::SystemTime::now()));
        *b.state.scheduler_status.lock() = status;
    }
}

/// Whether the database or its WAL was modified after the control-plane time `since`.
fn modified_after(path: &Path, since: &str) -> bool {
    let wal = path.with_file_name(format!("{}-wal", path.file_name().unwrap_or_default().to_string_lossy()));
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .any(|modified| utc_timestamp(modified).as_str() > since)
}
