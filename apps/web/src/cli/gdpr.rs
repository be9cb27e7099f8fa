//! `silo gdpr …`: data-subject requests from the command line. Each enqueues the same durable
//! job as the API and waits for it; while waiting this process also runs workers for that job
//! kind, so it completes whether or not a `silo serve` is running (if one is, whichever claims
//! the job first runs it).

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use silo_accounts::Accounts;
use silo_tenancy::jobs::JobStatus;
use silo_tenancy::jobs::worker::{PoolSettings, Workers};

use super::actor;

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
}

impl GdprCommand {
    /// Runs the command.
    pub async fn run(self, accounts: &Accounts) -> anyhow::Result<()> {
        match self {
            Self::ExportSubject { email, out } => {
                let jobs = accounts.tenancy().jobs();
                let job = accounts.subjects().start_export(&email, &actor()).await?;
                println!("job {} queued", job.id);
                let mut workers = Workers::new();
                silo_accounts::subjects::register(&mut workers, accounts);
                let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
                let pool = tokio::spawn(workers.run(jobs.clone(), PoolSettings::default(), async move {
                    let _ = stopping.await;
                }));
                let finished = loop {
                    let current = jobs.get(&job.id).await?;
                    if matches!(current.status, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled) {
                        break current;
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
                let result = finished.result.unwrap_or_default();
                if result["found"] != true {
                    anyhow::bail!("no data: no account has the address {email}");
                }
                let zip = silo_tenancy::jobs::kinds::export_path(accounts.tenancy(), &finished.id);
                std::fs::copy(&zip, &out)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                println!("{} ({} workspaces)", out.display(), result["tenants"]);
            }
        }
        Ok(())
    }
}
