//! Data-subject requests (GDPR Art. 15/20): everything Silo holds about one person, from the
//! control plane (account, memberships, sessions, tokens, invitations, mail, audit entries)
//! and from every tenant they belong to or once belonged to (their rows, as the tenant
//! schema's personal-data manifest attributes them; a suspended or soft-deleted tenant is
//! named under `tenants_not_readable` instead). Runs as the [`SUBJECT_EXPORT`] job; the result is a zip with one
//! `subject.json`, downloaded through the same expiring link as tenant exports.

use std::io::Write;

use crate::{Error, Result};
use serde_json::json;
use silo_core::db;
use silo_core::{TenantRef, Timestamp};
use silo_jobs::{Enqueued, JobContext, JobError, JobStatus, Outcome, Workers};
use silo_tenancy::TenantStatus;

use crate::users::Email;

/// Exports one person's data.
pub const SUBJECT_EXPORT: &str = "subject.export";

/// How long a request may take (GDPR Art. 12(3): one month).
pub const DEADLINE_DAYS: i64 = 30;

/// A data-subject request (a subject export or erasure, or a tenant export), as the console
/// and `silo gdpr requests` list it: the job that carries it out, seen as a request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Request {
    /// The job's id.
    pub id: String,
    /// `subject.export`, `subject.erase` or `tenant.export`.
    pub kind: String,
    /// Whom it is about: the address (`subject:<keyed hash>` once erased) or `tenant:<id>`.
    pub subject: String,
    /// The job's status.
    pub status: String,
    /// When it came in.
    pub received_at: Timestamp,
    /// When it was done.
    pub completed_at: Option<Timestamp>,
    /// Received + [`DEADLINE_DAYS`].
    pub deadline: Timestamp,
    /// Still open past its deadline.
    pub overdue: bool,
}

impl Request {
    /// The request a job is, as it stands at `now`.
    fn of(job: silo_jobs::Job, now: &Timestamp) -> Self {
        let subject = if job.kind == silo_tenancy::jobs::TENANT_EXPORT {
            format!("tenant:{}", job.payload["tenant"].as_str().unwrap_or_default())
        } else if let Some(hash) = job.payload["subject"].as_str() {
            format!("subject:{hash}")
        } else {
            job.payload["email"].as_str().unwrap_or_default().to_owned()
        };
        let deadline =
            job.created_at.plus(std::time::Duration::from_secs(DEADLINE_DAYS.unsigned_abs() * 86_400));
        let open = !matches!(job.status, JobStatus::Done | JobStatus::Cancelled);
        Self {
            overdue: open && deadline.unix_ms() < now.unix_ms(),
            completed_at: if job.status == JobStatus::Done { job.finished_at } else { None },
            id: job.id,
            kind: job.kind,
            subject,
            status: job.status.to_string(),
            received_at: job.created_at,
            deadline,
        }
    }
}

/// Data-subject requests (from [`crate::Accounts::subjects`]).
#[derive(Clone)]
pub struct Subjects(pub(crate) crate::Accounts);

impl Subjects {
    /// Starts an export of everything held about `email` as a durable job, within the bounds
    /// of `[exports]` per person (one at a time — a repeat gets the job in progress — and a
    /// daily allowance; see `silo_tenancy::Exports::start_bounded`).
    pub async fn start_export(&self, email: &str, actor: &str) -> Result<Enqueued> {
        let email = normalised(email);
        let job = silo_jobs::NewJob::new(SUBJECT_EXPORT, json!({ "email": email }));
        // One person's rows: small next to the disk's margin.
        Ok(self.0.tenancy().exports().start_bounded(job, "$.email", &email, 0, actor).await?)
    }

    /// Starts the erasure of everyone and everything `email` names as a durable job
    /// ([`crate::erasure`]); it retries a tenant that cannot be opened for hours.
    pub async fn start_erasure(&self, email: &str, actor: &str) -> Result<silo_jobs::Job> {
        let mut job =
            silo_jobs::NewJob::new(crate::erasure::SUBJECT_ERASE, json!({ "email": normalised(email) }));
        job.max_attempts = crate::erasure::ERASE_ATTEMPTS;
        Ok(self.0.tenancy().jobs().enqueue(job, actor).await?)
    }

    /// "Delete my account": see [`crate::erasure::close_account`]. Returns the erasure job.
    pub async fn close_account(&self, user_id: &str, password: &str) -> Result<silo_jobs::Job> {
        crate::erasure::close_account(&self.0, user_id, password).await
    }

    /// The person's own export requests (newest first), for the account page.
    pub async fn exports_of(&self, email: &str) -> Result<Vec<silo_jobs::Job>> {
        Ok(self.0.tenancy().jobs().with_payload(SUBJECT_EXPORT, "$.email", &[&normalised(email)], 5).await?)
    }

    /// What erasing `email` would delete or anonymise (a dry run): counts per tenant and per
    /// control-plane table, the exports it would delete. Changes nothing.
    pub async fn plan_erasure(&self, email: &str) -> Result<serde_json::Value> {
        crate::erasure::plan(&self.0, email).await
    }

    /// The newest requests (`open_only`: not yet done or cancelled), newest first.
    pub async fn requests(&self, open_only: bool, limit: i64) -> Result<Vec<Request>> {
        let kinds = [SUBJECT_EXPORT, crate::erasure::SUBJECT_ERASE, silo_tenancy::jobs::TENANT_EXPORT];
        let jobs = self.0.tenancy().jobs().of_kinds(&kinds, open_only, limit).await?;
        let now = self.0.now();
        Ok(jobs.into_iter().map(|job| Request::of(job, &now)).collect())
    }

    /// Everything held about `email`, or `None` when no account has that address (the same
    /// job outcome an operator sees for a typo: no data).
    pub async fn collect(&self, email: &str) -> Result<Option<serde_json::Value>> {
        let Ok(email) = Email::parse(email) else { return Ok(None) };
        let user = match self.0.users().by_email(email.as_str()).await {
            Ok(user) => user,
            Err(Error::UnknownUser(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let tenancy = self.0.tenancy();
        let workspaces = self.0.memberships().workspaces_of(&user.id).await?;
        let sessions: Vec<serde_json::Value> = self
            .0
            .sessions()
            .of_user(&user.id)
            .await?
            .into_iter()
            .map(|s| json!({ "created_at": s.created_at, "last_seen_at": s.last_seen_at, "expires_at": s.expires_at, "user_agent": s.user_agent, "ip": s.ip }))
            .collect();
        let outbox: Vec<serde_json::Value> = self
            .0
            .outbox()
            .list(Some(email.as_str()), 1000)
            .await?
            .into_iter()
            .map(|m| json!({ "subject": m.subject, "created_at": m.created_at, "sent_at": m.sent_at }))
            .collect();
        let (mut tenants, mut unavailable) = (serde_json::Map::new(), serde_json::Map::new());
        // Every workspace they ever belonged to: one they left still holds what they wrote.
        let ever: Vec<String> = db::query_scalar(
            "SELECT tenant_id FROM membership_history WHERE user_id = ?1
             UNION SELECT tenant_id FROM memberships WHERE user_id = ?1 ORDER BY 1",
        )
        .bind(user.id.to_string())
        .fetch_all(tenancy.control().reader())
        .await?;
        for id in ever {
            let tenant = tenancy.tenant(&TenantRef::Id(id.parse()?)).await?;
            if tenant.status == TenantStatus::Deleted {
                continue;
            }
            // A suspended or deleted tenant's file is not opened for requests; it is named so
            // the operator can resume it (or wait for its purge) and export again.
            if tenant.status != TenantStatus::Active {
                unavailable.insert(tenant.slug.to_string(), json!(tenant.status));
                continue;
            }
            let turn = tenancy.db_for(&tenant).await?.turn().await;
            let rows = silo_workspace::subject::rows_of(&turn, &user.id).await?;
            drop(turn);
            tenants.insert(tenant.slug.to_string(), json!(rows));
        }
        Ok(Some(json!({
            "account": { "id": user.id, "email": user.email, "display_name": user.display_name, "created_at": user.created_at },
            "memberships": workspaces,
            "sessions": sessions,
            "api_tokens": self.0.tokens().of_user(&user.id).await?,
            "emails": outbox,
            "audit": tenancy.control().audit_about(email.as_str(), &user.id).await?,
            "tenants": tenants,
            "tenants_not_readable": unavailable,
        })))
    }
}

/// An address as stored (trimmed, lower-cased when valid), so a job's payload can be matched
/// against the account's stored address.
fn normalised(email: &str) -> String {
    Email::parse(email).map(|e| e.to_string()).unwrap_or_else(|_| email.trim().to_owned())
}

/// Registers the people's job kinds (export and erasure).
pub fn register(workers: &mut Workers, accounts: &crate::Accounts) {
    let a = accounts.clone();
    workers.register(SUBJECT_EXPORT, move |ctx| subject_export(a.clone(), ctx));
    crate::erasure::register(workers, accounts);
}

/// Idempotent: a run writes beside the zip and renames over it.
async fn subject_export(accounts: crate::Accounts, ctx: JobContext) -> Outcome {
    let email =
        ctx.job.payload["email"].as_str().ok_or_else(|| JobError::fatal("the payload names no email"))?;
    let Some(data) = accounts.subjects().collect(email).await? else {
        return Ok(json!({ "found": false, "message": "no data: no account has this address" }));
    };
    let tenancy = accounts.tenancy();
    let exports = tenancy.exports();
    let (out, partial) = (exports.path(&ctx.job.id), exports.partial_path(&ctx.job.id));
    let write = |data: &serde_json::Value| -> std::io::Result<()> {
        std::fs::create_dir_all(exports.dir())?;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&partial)?);
        zip.start_file("subject.json", zip::write::SimpleFileOptions::default())?;
        zip.write_all(serde_json::to_string_pretty(data)?.as_bytes())?;
        zip.finish()?.sync_all()?;
        std::fs::rename(&partial, &out)
    };
    write(&data).map_err(|e| JobError::retry(format!("cannot write {}: {e}", out.display())))?;
    // The zip is in place, so an erasure from here on deletes it; one that began while the data
    // was gathered has the person in the ledger already: the zip goes now.
    let user_id = data["account"]["id"].as_str().unwrap_or_default();
    let subject = tenancy.erasures().subject_of(user_id).await?;
    if tenancy.erasures().get(&subject).await?.is_some() {
        exports
            .remove(&ctx.job.id)
            .map_err(|e| JobError::retry(format!("cannot delete {}: {e}", out.display())))?;
        return Ok(
            json!({ "found": false, "message": "the person was erased while their data was gathered; nothing is kept" }),
        );
    }
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let expires = std::time::SystemTime::now()
        + std::time::Duration::from_secs(silo_tenancy::jobs::EXPORT_DAYS * 86_400);
    let download = exports.download_link(&ctx.job.id, expires).await?;
    let tenants = data["tenants"].as_object().map_or(0, serde_json::Map::len);
    Ok(json!({ "found": true, "tenants": tenants, "bytes": bytes, "download": download }))
}
