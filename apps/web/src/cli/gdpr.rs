//! `silo gdpr …`: data-subject requests from the command line. `export-subject` and
//! `erase-subject` enqueue the same durable job as the API and wait for it, printing its
//! progress; while waiting this process also runs workers for those job kinds, so the job
//! completes whether or not a `silo serve` is running (if one is, whichever claims it first
//! runs it). `requests` lists the requests with their deadlines.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use silo_accounts::Accounts;
use silo_jobs::{Job, JobStatus};
use silo_jobs::{PoolSettings, Workers};

use super::actor;
use crate::output::{print_json, table};

/// GDPR commands.
#[derive(Debug, Subcommand)]
pub enum GdprCommand {
    /// Export everything held about one person (Art. 15/20) to a zip.
    ExportSubject {
        /// The person's email address.
        email: String,
        /// The zip to write.
        #[arg(long, value_name = "FILE.zip")]
        out: PathBuf,
    },
    /// Erase one person (Art. 17) from every tenant they belong to and from the control plane.
    EraseSubject {
        /// The person's email address.
        email: String,
        /// Only say what would be deleted or anonymised, per tenant; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Data-subject requests (exports and erasures) with their deadlines, newest first.
    Requests {
        /// Only requests not yet done.
        #[arg(long)]
        open: bool,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl GdprCommand {
    /// Runs the command.
    pub async fn run(self, accounts: &Accounts) -> anyhow::Result<()> {
        match self {
            Self::ExportSubject { email, out } => {
                let job = accounts.subjects().start_export(&email, &actor()).await?.job().clone();
                let result = run_to_end(accounts, job, false).await?;
                if result["found"] != true {
                    anyhow::bail!("no data: no account has the address {email}");
                }
                let zip = accounts.tenancy().exports().path(result["job_id"].as_str().unwrap_or_default());
                std::fs::copy(&zip, crate::output::resolve(&out))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                crate::say!("{} ({} workspaces)", out.display(), result["tenants"]);
            }
            Self::EraseSubject { email, dry_run: true, json } => {
                let plan = accounts.subjects().plan_erasure(&email).await?;
                if json {
                    return print_json(&plan);
                }
                if plan["found"] != true {
                    crate::say!("no data: no account has the address {email}");
                    return Ok(());
                }
                crate::say!("erasing {email} would change (nothing has been changed):");
                print_counts(&plan);
                crate::say!("exports deleted: {}", plan["exports"]);
            }
            Self::EraseSubject { email, dry_run: false, json } => {
                let job = accounts.subjects().start_erasure(&email, &actor()).await?;
                let result = run_to_end(accounts, job, json).await?;
                if json {
                    return print_json(&result);
                }
                match (result["found"].as_bool(), result["already_erased"].as_bool()) {
                    (Some(true), _) => {
                        crate::say!(
                            "erased {email} (ledger subject {})",
                            result["subject"].as_str().unwrap_or_default()
                        );
                        print_counts(&result);
                    }
                    (_, Some(true)) => crate::say!("{email} was already erased"),
                    _ => crate::say!("no data: no account has the address {email}"),
                }
            }
            Self::Requests { open, limit, json } => {
                let requests = accounts.subjects().requests(open, limit.clamp(1, 1000)).await?;
                if json {
                    return print_json(&requests);
                }
                let rows: Vec<Vec<String>> = requests
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.kind.clone(),
                            r.subject.clone(),
                            if r.overdue { format!("{} (OVERDUE)", r.status) } else { r.status.clone() },
                            r.received_at.to_string(),
                            r.deadline.date().to_owned(),
                            r.completed_at.as_ref().map(ToString::to_string).unwrap_or_default(),
                        ]
                    })
                    .collect();
                let header = ["ID", "KIND", "SUBJECT", "STATUS", "RECEIVED", "DEADLINE", "COMPLETED"];
                crate::say!("{}", table(&header, &rows));
            }
        }
        Ok(())
    }
}

/// Per tenant, then the control plane: what erasure changed (or would).
fn print_counts(report: &serde_json::Value) {
    let mut rows = Vec::new();
    let tenants = report["tenants"].as_object().cloned().unwrap_or_default();
    for (tenant, outcome) in &tenants {
        // A dry run's counts are the value; a job's are under `erased` with the slug beside.
        let (name, counts) = match outcome.get("erased") {
            Some(counts) => (outcome["slug"].as_str().unwrap_or(tenant).to_owned(), counts.clone()),
            None if outcome.get("purged").is_some() => {
                rows.push(vec![outcome["slug"].as_str().unwrap_or(tenant).to_owned(), "(purged)".into()]);
                continue;
            }
            None => (tenant.clone(), outcome.clone()),
        };
        rows.push(vec![name, counts.to_string()]);
    }
    for (table_name, n) in report["control_plane"].as_object().cloned().unwrap_or_default() {
        rows.push(vec![format!("control plane {table_name}"), n.to_string()]);
    }
    crate::say!("{}", table(&["WHERE", "ROWS"], &rows));
}

/// Runs `job` to its end with this process's own workers beside any server's, printing
/// progress on stdout (unless `quiet`: JSON output); its result with `job_id` added, or an error if it failed.
async fn run_to_end(accounts: &Accounts, job: Job, quiet: bool) -> anyhow::Result<serde_json::Value> {
    let jobs = accounts.tenancy().jobs();
    if !quiet {
        crate::say!("job {} queued", job.id);
    }
    let mut workers = Workers::new();
    silo_accounts::subjects::register(&mut workers, accounts);
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let pool = tokio::spawn(workers.run(jobs.clone(), PoolSettings::default(), async move {
        let _ = stopping.await;
    }));
    let mut shown = (0, None, None);
    let finished = loop {
        let current = jobs.get(&job.id).await?;
        if matches!(current.status, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled) {
            break current;
        }
        let now = (current.progress_done, current.progress_total, current.last_error.clone());
        if now != shown && !quiet {
            match (&now.1, &now.2) {
                (Some(total), _) => crate::say!("progress {}/{total}", now.0),
                (None, Some(error)) => crate::say!("retrying: {error}"),
                _ => {}
            }
            shown = now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(());
    pool.await?;
    anyhow::ensure!(
        finished.status == JobStatus::Done,
        "job {} {}: {}",
        finished.id,
        finished.status,
        finished.last_error.unwrap_or_default()
    );
    let mut result = finished.result.unwrap_or_default();
    result["job_id"] = serde_json::json!(finished.id);
    Ok(result)
}
