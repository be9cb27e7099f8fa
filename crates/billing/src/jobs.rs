//! Billing's recurring work as durable jobs: [`BILLING_RUN`] (`{"period": "YYYY-MM"}`) runs
//! the billing run for a month, [`BILLING_DUNNING`] (`{"day": "YYYY-MM-DD"}`) a dunning pass.
//! Both are idempotent (see [`crate::run`], [`crate::dunning`]), so a job taken up again after
//! a crash does nothing twice. [`Schedule::run`] (in `silo serve`, unless
//! `billing.schedule = false`) enqueues last month's run once and one dunning pass a day.

use std::time::Duration;

use crate::Result;
use serde_json::json;
use silo_jobs::{JobContext, JobError, NewJob, Outcome, Workers};

use crate::Billing;
use crate::period::Period;

/// Invoices a month.
pub const BILLING_RUN: &str = "billing.run";
/// Reminds and suspends over overdue invoices.
pub const BILLING_DUNNING: &str = "billing.dunning";
/// Who the scheduled jobs are enqueued by.
const SCHEDULER: &str = "billing:schedule";

/// Registers billing's job kinds.
pub fn register(workers: &mut Workers, billing: &Billing) {
    let b = billing.clone();
    workers.register(BILLING_RUN, move |ctx| billing_run(b.clone(), ctx));
    let b = billing.clone();
    workers.register(BILLING_DUNNING, move |ctx| dunning(b.clone(), ctx));
}

async fn billing_run(billing: Billing, ctx: JobContext) -> Outcome {
    let period: Period = ctx.job.payload["period"]
        .as_str()
        .ok_or_else(|| JobError::fatal("the payload names no period"))?
        .parse()?;
    let summary = billing.invoices().run(period, &format!("job:{}", ctx.job.id)).await?;
    serde_json::to_value(summary).map_err(JobError::fatal)
}

async fn dunning(billing: Billing, ctx: JobContext) -> Outcome {
    let now = billing.now();
    let summary = billing.dunning().run(now.as_str(), &format!("job:{}", ctx.job.id)).await?;
    serde_json::to_value(summary).map_err(JobError::fatal)
}

/// The monthly billing run and the daily dunning, as jobs (from [`Billing::schedule`]).
#[derive(Clone, Copy)]
pub struct Schedule<'a>(pub(crate) &'a Billing);

impl Billing {
    /// The monthly billing run and the daily dunning, as jobs.
    pub fn schedule(&self) -> Schedule<'_> {
        Schedule(self)
    }
}

impl Schedule<'_> {
    /// Enqueues what is due and not yet enqueued: last month's billing run, today's dunning
    /// pass. Returns the jobs enqueued.
    pub async fn due(&self) -> Result<Vec<String>> {
        let now = self.0.now();
        let last_month = Period::of(now.as_str())?.previous().to_string();
        let today = now.date().to_owned();
        let mut enqueued = Vec::new();
        for (kind, key, value) in [(BILLING_RUN, "period", last_month), (BILLING_DUNNING, "day", today)] {
            let field = format!("$.{key}");
            let existing = self.0.tenancy().jobs().with_payload(kind, &field, &[&value], 1).await?;
            if existing.is_empty() {
                let job = self
                    .0
                    .tenancy()
                    .jobs()
                    .enqueue(NewJob::new(kind, json!({ key: value })), SCHEDULER)
                    .await?;
                enqueued.push(job.id);
            }
        }
        Ok(enqueued)
    }

    /// Calls [`Schedule::due`] at start and then every `every`, until `stop`.
    pub async fn run(self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.due().await {
                tracing::warn!(error = %e, "scheduling billing jobs failed; trying again later");
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        tracing::info!("billing schedule stopped");
    }
}
