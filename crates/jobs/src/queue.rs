//! Durable jobs in the control plane (`jobs` table): enqueue, claim with a lease, heartbeat
//! (renews the lease and records progress), complete, fail with retry and backoff,
//! dead-letter after `max_attempts`, cancel, retry by hand.
//!
//! A worker that dies (a killed process) stops renewing its lease; once the lease runs out the
//! job is claimed again by the next worker. Only the worker holding the lease can record an
//! outcome, and every job kind's steps are idempotent, so a job taken up again finishes once in
//! effect. The worker pool that runs jobs is [`crate::worker`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use silo_core::db::{self, Db, Engine};
use silo_core::erasure::ErasureStep;
use silo_core::{ProcessClock, TenantId, Timestamp};

use crate::{Error, Result};

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to be claimed (maybe after a backoff).
    Queued,
    /// Claimed by a worker whose lease runs.
    Running,
    /// Finished; `result` holds its output.
    Done,
    /// Dead-lettered: failed `max_attempts` times (or refused as not retryable).
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl TryFrom<String> for JobStatus {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        Ok(match stored.as_str() {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(Error::UnknownStatus(other.to_owned())),
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `jobs`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Id (UUID v7).
    pub id: String,
    /// What runs it.
    pub kind: String,
    /// Its input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// Where it stands.
    pub status: JobStatus,
    /// Claims so far.
    pub attempts: i64,
    /// Claims allowed before it is dead-lettered.
    pub max_attempts: i64,
    /// Not claimed before this.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub run_after: Timestamp,
    /// The worker holding it.
    pub lease_owner: Option<String>,
    /// Claimable again after this.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub lease_until: Option<Timestamp>,
    /// Steps done.
    pub progress_done: i64,
    /// Steps in all, once known.
    pub progress_total: Option<i64>,
    /// Its output, once done.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Who asked for it.
    pub created_by: String,
    /// Enqueued.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    /// Last change.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
    /// Done, failed for good or cancelled.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub finished_at: Option<Timestamp>,
}

/// A row of `jobs` as stored: JSON as text, which either engine decodes (sqlx's `Json`
/// wants PostgreSQL's JSON types).
#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    payload: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    run_after: Timestamp,
    lease_owner: Option<String>,
    lease_until: Option<Timestamp>,
    progress_done: i64,
    progress_total: Option<i64>,
    result: Option<String>,
    last_error: Option<String>,
    created_by: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    finished_at: Option<Timestamp>,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for Job
where
    JobRow: sqlx::FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        let stored = JobRow::from_row(row)?;
        let json = |column: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|e| sqlx::Error::ColumnDecode { index: column.into(), source: e.into() })
        };
        Ok(Self {
            payload: json("payload", &stored.payload)?,
            status: JobStatus::try_from(stored.status)
                .map_err(|e| sqlx::Error::ColumnDecode { index: "status".into(), source: e.into() })?,
            result: stored.result.as_deref().map(|text| json("result", text)).transpose()?,
            id: stored.id,
            kind: stored.kind,
            attempts: stored.attempts,
            max_attempts: stored.max_attempts,
            run_after: stored.run_after,
            lease_owner: stored.lease_owner,
            lease_until: stored.lease_until,
            progress_done: stored.progress_done,
            progress_total: stored.progress_total,
            last_error: stored.last_error,
            created_by: stored.created_by,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            finished_at: stored.finished_at,
        })
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// What runs it (a kind the worker pool knows).
    pub kind: String,
    /// Its input.
    pub payload: serde_json::Value,
    /// Claims allowed before it is dead-lettered.
    pub max_attempts: i64,
    /// Not run before this long from now.
    pub delay: Duration,
}

impl NewJob {
    /// A job of `kind` with `payload`, due now, with the default five attempts.
    pub fn new(kind: &str, payload: serde_json::Value) -> Self {
        Self { kind: kind.to_owned(), payload, max_attempts: 5, delay: Duration::ZERO }
    }
}

/// What [`Jobs::enqueue_bounded`] did.
#[derive(Clone, Debug)]
pub enum Enqueued {
    /// A new job was queued.
    New(Job),
    /// One for the same key was already queued or running: that one.
    InProgress(Job),
}

impl Enqueued {
    /// The job, new or in progress.
    pub fn job(&self) -> &Job {
        match self {
            Self::New(job) | Self::InProgress(job) => job,
        }
    }
}

/// The bounds of one kind of job per key (a workspace, a person): one queued or running at a
/// time, at most `per_day` started within 24 hours, and none started once the jobs of the
/// last 24 hours wrote `bytes_per_day` (their results' `bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Bound<'a> {
    /// Where the key is in the payload (a JSON path: `$.tenant`).
    pub key_path: &'a str,
    /// The key.
    pub key: &'a str,
    /// Started within 24 hours, at most.
    pub per_day: u32,
    /// Bytes written within 24 hours before none is started.
    pub bytes_per_day: u64,
}

/// The wait before the next attempt after `attempts` failures: 2, 4, 8 … seconds, at most
/// ten minutes.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempts.clamp(1, 20) as u32).min(600))
}

/// The durable job queue.
#[derive(Clone)]
pub struct Jobs {
    write: Db,
    read: Db,
    /// Woken by every job enqueued in this process, so an idle worker pool claims it at once
    /// rather than at its next poll (jobs enqueued by another process wait for the poll).
    enqueued: Arc<tokio::sync::Notify>,
    /// Every time the queue stores or compares (run after, leases, the day's bound, pruning).
    clock: ProcessClock,
}

/// A day, for the bounds per key and day.
const DAY: Duration = Duration::from_secs(86_400);

impl Jobs {
    /// The queue in the control plane behind these pools (`write`: the one-connection writer),
    /// on `clock`.
    pub fn new(write: Db, read: Db, clock: ProcessClock) -> Self {
        Self { write, read, enqueued: Arc::default(), clock }
    }

    /// Now, on the queue's clock.
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Enqueues a job; it runs as soon as a worker is free.
    pub async fn enqueue(&self, job: NewJob, actor: &str) -> Result<Job> {
        let id = self.insert(&job, actor, None).await?.expect("an unbounded job is always inserted");
        self.get(&id).await
    }

    /// Enqueues a job unless `bound` says no: the job of the same kind and key already
    /// queued or running is returned instead, and a key that used its day is refused
    /// ([`Error::AllowanceUsed`], saying when the next may start). Check and insert are one
    /// statement, so concurrent requests cannot pass the bound together.
    pub async fn enqueue_bounded(&self, job: NewJob, actor: &str, bound: &Bound<'_>) -> Result<Enqueued> {
        // Refused because one was in progress, which finished before it could be returned:
        // then the day may still have room, and the insert is tried again.
        for _ in 0..3 {
            if let Some(id) = self.insert(&job, actor, Some(bound)).await? {
                return Ok(Enqueued::New(self.get(&id).await?));
            }
            let running: Option<String> = db::query_scalar(
                "SELECT id FROM jobs WHERE kind = ?1 AND json_extract(payload, ?2) = ?3
                 AND status IN ('queued', 'running') ORDER BY id LIMIT 1",
            )
            .bind(&job.kind)
            .bind(bound.key_path)
            .bind(bound.key)
            .fetch_optional(&self.write)
            .await?;
            if let Some(running) = running {
                return Ok(Enqueued::InProgress(self.get(&running).await?));
            }
            let (started, bytes): (i64, i64) = db::query_as(
                "SELECT count(*), coalesce(CAST(sum(CAST(json_extract(result, '$.bytes') AS BIGINT)) AS BIGINT), 0) FROM jobs
                 WHERE kind = ?1 AND json_extract(payload, ?2) = ?3 AND created_at > ?4",
            )
            .bind(&job.kind)
            .bind(bound.key_path)
            .bind(bound.key)
            .bind(self.now().minus(DAY).as_str().to_owned())
            .fetch_one(&self.write)
            .await?;
            let byte_budget = i64::try_from(bound.bytes_per_day).unwrap_or(i64::MAX);
            if started >= i64::from(bound.per_day) || bytes >= byte_budget {
                break;
            }
        }
        let oldest: Option<silo_core::Timestamp> = db::query_scalar(
            "SELECT min(created_at) FROM jobs WHERE kind = ?1 AND json_extract(payload, ?2) = ?3 AND created_at > ?4",
        )
        .bind(&job.kind)
        .bind(bound.key_path)
        .bind(bound.key)
        .bind(self.now().minus(DAY).as_str().to_owned())
        .fetch_one(&self.write)
        .await?;
        // The oldest of the day's jobs leaves the window a day after it started.
        let next = oldest.unwrap_or_else(|| self.now()).plus(DAY);
        let at = next.as_str().get(..16).unwrap_or_default().replace('T', " ");
        Err(Error::AllowanceUsed {
            message: format!(
                "the day's allowance is used up ({} a day, or {} MB a day); the next can start after {at} UTC",
                bound.per_day,
                bound.bytes_per_day / 1_000_000,
            ),
            next,
        })
    }

    /// Inserts `job` with its audit entry — when `bound` allows it (checked in the inserting
    /// statement) — and wakes this process's workers; the new job's id, or `None` when the
    /// bound refused it.
    async fn insert(&self, job: &NewJob, actor: &str, bound: Option<&Bound<'_>>) -> Result<Option<String>> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.write.begin().await?;
        // ?7 is now, ?8 a day ago; the bound's key and allowances follow.
        let same = "kind = ?2 AND json_extract(payload, ?9) = ?10";
        let guard = match bound {
            None => String::new(),
            Some(_) => format!(
                "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE {same} AND status IN ('queued', 'running'))
                   AND (SELECT count(*) FROM jobs WHERE {same} AND created_at > ?8) < ?11
                   AND (SELECT coalesce(CAST(sum(CAST(json_extract(result, '$.bytes') AS BIGINT)) AS BIGINT), 0) FROM jobs
                        WHERE {same} AND created_at > ?8) < ?12"
            ),
        };
        let sql = format!(
            "INSERT INTO jobs (id, kind, payload, status, max_attempts, run_after, created_by, created_at, updated_at)
             SELECT ?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?7 {guard}"
        );
        let now = self.now();
        let mut insert = db::query(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(&job.kind)
            .bind(job.payload.to_string())
            .bind(job.max_attempts.max(1))
            .bind(now.plus(job.delay).as_str().to_owned())
            .bind(actor)
            .bind(now.as_str().to_owned())
            .bind(now.minus(DAY).as_str().to_owned());
        if let Some(bound) = bound {
            insert = insert
                .bind(bound.key_path)
                .bind(bound.key)
                .bind(i64::from(bound.per_day))
                .bind(i64::try_from(bound.bytes_per_day).unwrap_or(i64::MAX));
        }
        if insert.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let detail = serde_json::json!({ "job": id, "kind": job.kind });
        silo_core::audit::record(&mut tx, &now, actor, "job.enqueue", None, &detail).await?;
        tx.commit().await?;
        self.enqueued.notify_waiters();
        Ok(Some(id))
    }

    /// Deletes jobs that finished (done, failed or cancelled) more than `keep` ago; returns
    /// how many. Their audit entries stay.
    pub async fn prune(&self, keep: Duration) -> Result<u64> {
        let pruned = db::query(
            "DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ?1",
        )
        .bind(self.now().minus(keep).as_str().to_owned())
        .execute(&self.write)
        .await?;
        Ok(pruned.rows_affected())
    }

    /// Replaces a job's input (a handler that must not keep what it was given: an erasure
    /// request's address).
    pub async fn replace_payload(&self, id: &str, payload: &serde_json::Value) -> Result<()> {
        let mut tx = self.write.begin().await?;
        replace_payload_in(&mut tx, id, payload).await?;
        Ok(tx.commit().await?)
    }

    /// The jobs of `kind` whose payload field `field` (a JSON path: `$.email`) is one of
    /// `values`, newest first, at most `limit`.
    pub async fn with_payload(
        &self,
        kind: &str,
        field: &str,
        values: &[&str],
        limit: i64,
    ) -> Result<Vec<Job>> {
        Ok(db::query_as(
            "SELECT * FROM jobs WHERE kind = ?1 AND json_extract(payload, ?2) IN (SELECT value FROM json_each(?3))
             ORDER BY id DESC LIMIT ?4",
        )
        .bind(kind)
        .bind(field)
        .bind(serde_json::json!(values).to_string())
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// The newest `limit` jobs of one of `kinds` (`open_only`: neither done nor cancelled).
    pub async fn of_kinds(&self, kinds: &[&str], open_only: bool, limit: i64) -> Result<Vec<Job>> {
        Ok(db::query_as(
            "SELECT * FROM jobs WHERE kind IN (SELECT value FROM json_each(?1))
               AND (NOT ?2 OR status NOT IN ('done', 'cancelled'))
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(serde_json::json!(kinds).to_string())
        .bind(open_only)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// A job by id.
    pub async fn get(&self, id: &str) -> Result<Job> {
        db::query_as("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::UnknownJob(id.to_owned()))
    }

    /// The queued jobs of `kind` whose payload names `tenant`.
    pub async fn queued_for(&self, kind: &str, tenant: TenantId) -> Result<Vec<Job>> {
        let mut jobs = self.of_tenant(kind, tenant, 1000).await?;
        jobs.retain(|j| j.status == JobStatus::Queued);
        Ok(jobs)
    }

    /// The newest `limit` jobs of `kind` whose payload names `tenant`.
    pub async fn of_tenant(&self, kind: &str, tenant: TenantId, limit: i64) -> Result<Vec<Job>> {
        self.with_payload(kind, "$.tenant", &[&tenant.to_string()], limit).await
    }

    /// The newest `limit` jobs, optionally only those in `status`.
    pub async fn list(&self, status: Option<JobStatus>, limit: i64) -> Result<Vec<Job>> {
        Ok(db::query_as("SELECT * FROM jobs WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2")
            .bind(status.map(JobStatus::as_str))
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    /// Claims the next job of one of `kinds` that is due — queued and past its backoff, or
    /// running on a lease that ran out (its worker died) — for `worker`, leased for `lease`.
    ///
    /// One statement: on SQLite it runs alone (one writer); on PostgreSQL, where workers of
    /// several nodes claim at once, the row is locked as it is chosen and a row another
    /// claimer holds is skipped (`FOR UPDATE SKIP LOCKED`), so each job goes to one worker
    /// and no claimer waits for another.
    pub async fn claim(&self, worker: &str, kinds: &[&str], lease: Duration) -> Result<Option<Job>> {
        let kinds = serde_json::to_string(kinds).expect("strings serialise");
        let now = self.now();
        let lock = match self.write.engine() {
            Engine::Sqlite => "",
            Engine::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let claimed: Option<Job> = db::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?1,
                 lease_until = ?2, updated_at = ?4
             WHERE id = (SELECT id FROM jobs
                         WHERE kind IN (SELECT value FROM json_each(?3))
                           AND ((status = 'queued' AND run_after <= ?4)
                             OR (status = 'running' AND lease_until < ?4))
                         ORDER BY run_after, id LIMIT 1 {lock})
             RETURNING *",
        )))
        .bind(worker)
        .bind(now.plus(lease).as_str().to_owned())
        .bind(kinds)
        .bind(now.as_str().to_owned())
        .fetch_optional(&self.write)
        .await?;
        Ok(claimed)
    }

    /// Renews `worker`'s lease on a running job and records its progress. `false` when the job
    /// is no longer this worker's to run (cancelled, or its lease ran out and it was claimed
    /// again): the worker should stop.
    pub async fn heartbeat(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
        done: i64,
        total: Option<i64>,
    ) -> Result<bool> {
        let now = self.now();
        let renewed = db::query(
            "UPDATE jobs SET lease_until = ?3, progress_done = ?4, progress_total = ?5, updated_at = ?6
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(now.plus(lease).as_str().to_owned())
        .bind(done)
        .bind(total)
        .bind(now.as_str().to_owned())
        .execute(&self.write)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Records a job's output (and its final progress: steps done, of how many; all of them
    /// when `None`). `false` when `worker` no longer holds it (its outcome is not recorded: the
    /// worker that holds it now will record its own).
    pub async fn complete(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        progress: Option<(i64, Option<i64>)>,
    ) -> Result<bool> {
        let done = db::query(
            "UPDATE jobs SET status = 'done', result = ?3, lease_owner = NULL, lease_until = NULL,
                 progress_done = coalesce(?4, progress_total, progress_done), progress_total = coalesce(?5, progress_total),
                 updated_at = ?6, finished_at = ?6
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(result.to_string())
        .bind(progress.map(|(done, _)| done))
        .bind(progress.and_then(|(_, total)| total))
        .bind(self.now().as_str().to_owned())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: queued again after [`backoff`], or dead-lettered (`failed`)
    /// once it used its attempts (or at once when `retryable` is false). `false` when `worker`
    /// no longer holds the job.
    pub async fn fail(&self, id: &str, worker: &str, error: &str, retryable: bool) -> Result<bool> {
        // (A NUL in the error, which PostgreSQL's text cannot hold, is left out: a failure must
        // be recordable, or the job would be taken up again for ever.)
        let job = self.get(id).await?;
        let dead = !retryable || job.attempts >= job.max_attempts;
        let now = self.now();
        let failed = db::query(
            "UPDATE jobs SET status = CASE WHEN ?4 THEN 'failed' ELSE 'queued' END, last_error = ?3,
                 run_after = ?5, lease_owner = NULL, lease_until = NULL,
                 updated_at = ?6, finished_at = CASE WHEN ?4 THEN ?6 END
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(error.replace('\0', ""))
        .bind(dead)
        .bind(now.plus(backoff(job.attempts)).as_str().to_owned())
        .bind(now.as_str().to_owned())
        .execute(&self.write)
        .await?;
        if dead && failed.rows_affected() == 1 {
            tracing::error!(job = id, kind = job.kind, attempts = job.attempts, error, "job dead-lettered");
        }
        Ok(failed.rows_affected() == 1)
    }

    /// Hands a running job back to the queue without spending its attempt: another server of
    /// the cluster must run it (the tenant it works on is there). Claimable again in a second
    /// (by any server: the right one gets it within a few tries). `false` when `worker` no
    /// longer holds it.
    pub async fn hand_back(&self, id: &str, worker: &str, why: &str) -> Result<bool> {
        let now = self.now();
        let handed = db::query(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, last_error = ?3, run_after = ?4,
                 lease_owner = NULL, lease_until = NULL, updated_at = ?5
             WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(why.replace('\0', ""))
        .bind(now.plus(std::time::Duration::from_secs(1)).as_str().to_owned())
        .bind(now.as_str().to_owned())
        .execute(&self.write)
        .await?;
        Ok(handed.rows_affected() == 1)
    }

    /// Woken when a job is enqueued in this process (the worker pool's wake-up).
    pub(crate) fn enqueued(&self) -> &tokio::sync::Notify {
        &self.enqueued
    }

    /// Cancels a queued or running job (a running one stops at its next heartbeat).
    pub async fn cancel(&self, id: &str, actor: &str) -> Result<Job> {
        self.change(
            id,
            actor,
            "job.cancel",
            &["queued", "running"],
            "status = 'cancelled', lease_owner = NULL, lease_until = NULL, finished_at = ?3",
        )
        .await
    }

    /// Queues a dead-lettered or cancelled job again, with its attempts reset.
    pub async fn retry(&self, id: &str, actor: &str) -> Result<Job> {
        self.change(
            id,
            actor,
            "job.retry",
            &["failed", "cancelled"],
            "status = 'queued', attempts = 0, run_after = ?3, last_error = NULL, finished_at = NULL",
        )
        .await
    }

    async fn change(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        from: &[&str],
        set: &'static str,
    ) -> Result<Job> {
        let job = self.get(id).await?;
        if !from.contains(&job.status.as_str()) {
            return Err(Error::InvalidTransition {
                job: id.to_owned(),
                action: if action == "job.cancel" { "cancel" } else { "retry" },
                status: job.status.to_string(),
            });
        }
        let now = self.now();
        let mut tx = self.write.begin().await?;
        // `set` may use ?3, now.
        let changed = db::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET {set}, updated_at = ?3 WHERE id = ?1 AND status = ?2"
        )))
        .bind(id)
        .bind(job.status.as_str())
        .bind(now.as_str().to_owned())
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() != 1 {
            return Err(Error::Changed(id.to_owned()));
        }
        silo_core::audit::record(&mut tx, &now, actor, action, None, &serde_json::json!({ "job": id }))
            .await?;
        tx.commit().await?;
        self.get(id).await
    }
}

/// What erasing a person does to the queue (see [`silo_core::erasure`]): jobs they started
/// name the keyed hash instead; any other job quoting their address loses its input, output
/// and error (the erasure's own job keeps its input until it replaces it).
pub const ERASURE_STEPS: &[ErasureStep] = &[
    ErasureStep { table: "jobs", rows: "jobs WHERE created_by IN (?1, ?2)", set: Some("created_by = ?3") },
    ErasureStep {
        table: "jobs",
        rows: "jobs WHERE id <> ?4 AND (instr(lower(payload), ?2) > 0 OR instr(lower(coalesce(result, '')), ?2) > 0 \
               OR instr(lower(coalesce(last_error, '')), ?2) > 0)",
        set: Some(
            "payload = '{}', result = CASE WHEN result IS NULL THEN NULL ELSE '{}' END, last_error = NULL",
        ),
    },
];

/// Replaces a job's input inside the caller's transaction (an erasure keeps only the keyed
/// hash of whom it erased, committed with the erasure itself).
pub async fn replace_payload_in(conn: &mut db::Conn, id: &str, payload: &serde_json::Value) -> Result<()> {
    db::query("UPDATE jobs SET payload = ?2 WHERE id = ?1")
        .bind(id)
        .bind(payload.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes the field at `path` (a JSON path) from the results of the jobs of `kind` whose
/// payload field `field` is `value`, inside the caller's transaction: a purged tenant's
/// slug leaves the manifests of its finished exports.
pub async fn remove_result_field_in(
    conn: &mut db::Conn,
    kind: &str,
    field: &str,
    value: &str,
    path: &str,
) -> Result<u64> {
    let changed = db::query(
        "UPDATE jobs SET result = json_remove(result, ?4)
         WHERE kind = ?1 AND json_extract(payload, ?2) = ?3 AND result IS NOT NULL",
    )
    .bind(kind)
    .bind(field)
    .bind(value)
    .bind(path)
    .execute(&mut *conn)
    .await?;
    Ok(changed.rows_affected())
}
