//! `silo jobs list|show|retry|cancel`: the durable job queue. Jobs run inside `silo serve`;
//! these commands read and change the queue in `control.db` (safe beside a running server:
//! a cancelled job stops at its worker's next heartbeat).

use clap::Subcommand;
use silo_jobs::{Job, JobStatus};
use silo_tenancy::Tenancy;

use super::actor;
use crate::output::{print_json, table};

/// Job commands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The newest jobs.
    List {
        /// Only jobs in this status: queued, running, done, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One job, whole (payload, progress, result or last error).
    Show {
        /// Job id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed or cancelled job again (attempts reset).
    Retry {
        /// Job id.
        id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// Job id.
        id: String,
    },
}

impl JobsCommand {
    /// Runs the command.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<()> {
        let jobs = tenancy.jobs();
        match self {
            Self::List { status, limit, json } => {
                let status = status.map(JobStatus::try_from).transpose()?;
                let list = jobs.list(status, limit.clamp(1, 1000)).await?;
                if json {
                    return print_json(&list);
                }
                let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                crate::say!("{}", table(&["ID", "KIND", "STATUS", "ATTEMPTS", "PROGRESS", "CREATED"], &rows));
            }
            Self::Show { id, json } => {
                let job = jobs.get(&id).await?;
                if json {
                    return print_json(&job);
                }
                print_detail(&job);
            }
            Self::Retry { id } => crate::say!("{} is {}", id, jobs.retry(&id, &actor()).await?.status),
            Self::Cancel { id } => crate::say!("{} is {}", id, jobs.cancel(&id, &actor()).await?.status),
        }
        Ok(())
    }
}

fn progress(job: &Job) -> String {
    match job.progress_total {
        Some(total) => format!("{}/{total}", job.progress_done),
        None => job.progress_done.to_string(),
    }
}

fn row(job: &Job) -> Vec<String> {
    let attempts = format!("{}/{}", job.attempts, job.max_attempts);
    vec![
        job.id.clone(),
        job.kind.clone(),
        job.status.to_string(),
        attempts,
        progress(job),
        job.created_at.to_string(),
    ]
}

fn print_detail(job: &Job) {
    let optional =
        |t: &Option<silo_core::Timestamp>| t.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
    let rows = [
        ("id", job.id.clone()),
        ("kind", job.kind.clone()),
        ("status", job.status.to_string()),
        ("attempts", format!("{} of {}", job.attempts, job.max_attempts)),
        ("progress", progress(job)),
        ("payload", job.payload.to_string()),
        ("result", job.result.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)),
        ("last_error", job.last_error.clone().unwrap_or_else(|| "-".to_owned())),
        ("created_by", job.created_by.clone()),
        ("created_at", job.created_at.to_string()),
        ("run_after", job.run_after.to_string()),
        ("lease_until", optional(&job.lease_until)),
        ("finished_at", optional(&job.finished_at)),
    ];
    for (key, value) in rows {
        crate::say!("{key:<12} {value}");
    }
}
