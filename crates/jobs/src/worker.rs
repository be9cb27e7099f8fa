//! The worker pool: claims due jobs of the kinds it has handlers for, runs each with a
//! heartbeat that renews its lease and records progress, and records the outcome. Built and
//! stopped by the application (`silo serve`); several processes may run pools on one data
//! directory (the claim is one atomic statement).
//!
//! A handler gets a [`JobContext`]: the job, a way to report progress, and whether the job is
//! still its own (an operator cancelled it, or its lease ran out). Handlers must be idempotent
//! step by step: after a crash the job runs again from the start. A handler that panics fails
//! its attempt like one that returns an error (the panic's message is the job's last error),
//! and its heartbeat stops with it.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::FutureExt;

use crate::{Job, Jobs};

/// What a handler returns: the job's result, or an error and whether to retry.
pub type Outcome = Result<serde_json::Value, JobError>;

/// A failed run.
#[derive(Debug)]
pub struct JobError {
    /// What went wrong (kept on the job).
    pub message: String,
    /// Whether another attempt may succeed (bad input will not).
    pub retryable: bool,
    /// Another server of the cluster must run it (the tenant is there): handed back to the
    /// queue without spending an attempt.
    pub elsewhere: bool,
}

impl JobError {
    /// A failure worth another attempt.
    pub fn retry(message: impl std::fmt::Display) -> Self {
        Self { message: message.to_string(), retryable: true, elsewhere: false }
    }

    /// A failure no attempt will fix (dead-lettered at once).
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        Self { message: message.to_string(), retryable: false, elsewhere: false }
    }

    /// A failure of the given kind: the caller's doing (an unknown tenant, a wrong state) will
    /// not change by retrying; anything else may.
    pub fn of_kind(kind: silo_core::ErrorKind, message: impl std::fmt::Display) -> Self {
        let elsewhere = kind == silo_core::ErrorKind::Elsewhere;
        Self { message: message.to_string(), retryable: !kind.is_users(), elsewhere }
    }
}

impl From<crate::Error> for JobError {
    fn from(e: crate::Error) -> Self {
        Self::of_kind(e.kind(), e)
    }
}

/// A job kind's code.
pub type Handler = Arc<dyn Fn(JobContext) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What a running handler knows.
#[derive(Clone)]
pub struct JobContext {
    /// The job (as claimed: `attempts` counts this run).
    pub job: Job,
    done: Arc<AtomicI64>,
    total: Arc<AtomicI64>,
    lost: Arc<AtomicBool>,
}

impl JobContext {
    /// Records progress (saved with the next heartbeat).
    pub fn progress(&self, done: i64, total: i64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Whether the job is no longer this run's (cancelled, or claimed again after a lost
    /// lease): a handler checks between steps and stops.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The pool's settings.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often an idle pool looks for due jobs.
    pub poll: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { concurrency: 2, lease: Duration::from_secs(30), poll: Duration::from_millis(500) }
    }
}

/// Handlers by job kind, and the loop that runs them.
#[derive(Clone, Default)]
pub struct Workers {
    handlers: HashMap<String, Handler>,
}

impl Workers {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the code of a job kind.
    pub fn register<F, Fut>(&mut self, kind: &str, handler: F)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        self.handlers.insert(kind.to_owned(), Arc::new(move |ctx| Box::pin(handler(ctx))));
    }

    /// Splits off the handlers of `kinds` into a pool of their own (a lane: run with its own
    /// concurrency, so however many of its jobs wait they never hold up the others); returns
    /// that lane and leaves the rest here.
    pub fn lane(&mut self, kinds: &[&str]) -> Workers {
        let handlers = kinds.iter().filter_map(|k| self.handlers.remove_entry(*k)).collect();
        Workers { handlers }
    }

    /// The kinds this pool runs.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }

    /// Runs jobs until `stop` completes, then waits for the jobs in progress to finish (a job
    /// cut off by a kill instead is taken up again by the next pool once its lease runs out).
    pub async fn run(self, jobs: Jobs, settings: PoolSettings, stop: impl Future<Output = ()>) {
        let worker = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7());
        let slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        let mut running = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        tracing::info!(worker, kinds = ?self.kinds(), "job workers started");
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut stop => break,
            };
            // Listening before the claim: a job enqueued after a claim that found nothing
            // still wakes the pool.
            let enqueued = jobs.enqueued().notified();
            tokio::pin!(enqueued);
            enqueued.as_mut().enable();
            let claimed = match jobs.claim(&worker, &self.kinds(), settings.lease).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    None
                }
            };
            let Some(job) = claimed else {
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(settings.poll) => continue,
                    () = enqueued => continue,
                    () = &mut stop => break,
                }
            };
            let handler = self.handlers[&job.kind].clone();
            let (jobs, worker, lease) = (jobs.clone(), worker.clone(), settings.lease);
            running.spawn(async move {
                run_one(jobs, &worker, lease, handler, job).await;
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        tracing::info!(in_progress = running.len(), "job workers stopping");
        while running.join_next().await.is_some() {}
    }
}

/// Runs one claimed job with its heartbeat, then records the outcome.
async fn run_one(jobs: Jobs, worker: &str, lease: Duration, handler: Handler, job: Job) {
    let id = job.id.clone();
    if job.attempts > job.max_attempts {
        // Its lease ran out once too often (a job that kills its process?): stop taking it.
        let message = format!("abandoned by its worker {} times", job.attempts - 1);
        let _ = jobs.fail(&id, worker, &message, false).await;
        return;
    }
    let ctx = JobContext {
        done: Arc::new(AtomicI64::new(job.progress_done)),
        total: Arc::new(AtomicI64::new(job.progress_total.unwrap_or(-1))),
        lost: Arc::default(),
        job,
    };
    let beat = {
        let (ctx, jobs, worker) = (ctx.clone(), jobs.clone(), worker.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let total = ctx.total.load(Ordering::Relaxed);
                let total = (total >= 0).then_some(total);
                match jobs
                    .heartbeat(&ctx.job.id, &worker, lease, ctx.done.load(Ordering::Relaxed), total)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        ctx.lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => tracing::warn!(job = ctx.job.id, error = %e, "job heartbeat failed"),
                }
            }
        })
    };
    // The heartbeat ends with this run whatever happens to it: a handler that panics must not
    // leave a detached task renewing its lease forever.
    let _beat = AbortOnDrop(beat);
    let kind = ctx.job.kind.clone();
    let (done, total) = (ctx.done.clone(), ctx.total.clone());
    // A panic fails the attempt like an error (retried with backoff, dead-lettered at the
    // limit), with its message recorded.
    let outcome = match AssertUnwindSafe(handler(ctx)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(job = id, kind, panic = message, "job handler panicked");
            Err(JobError::retry(format!("the job panicked: {message}")))
        }
    };
    drop(_beat);
    let total = total.load(Ordering::Relaxed);
    let progress = Some((done.load(Ordering::Relaxed), (total >= 0).then_some(total)));
    let recorded = match &outcome {
        Ok(result) => jobs.complete(&id, worker, result, progress).await,
        Err(e) if e.elsewhere => jobs.hand_back(&id, worker, &e.message).await,
        Err(e) => jobs.fail(&id, worker, &e.message, e.retryable).await,
    };
    match recorded {
        Ok(true) => tracing::info!(job = id, kind, ok = outcome.is_ok(), "job run recorded"),
        Ok(false) => tracing::info!(
            job = id,
            kind,
            "job no longer ours (cancelled or re-claimed): outcome not recorded"
        ),
        Err(e) => {
            tracing::error!(job = id, kind, error = %e, "recording a job's outcome failed; it runs again after its lease")
        }
    }
}

/// Aborts a task when dropped (the heartbeat of a run, however the run ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
