//! Erasing a person (GDPR Art. 17) across every copy Silo holds: the [`SUBJECT_ERASE`] job.
//!
//! Steps, each idempotent, so a run taken up again after a killed process finishes once in
//! effect:
//! 1. Find the account by address. None: the job ends "no data" (or "already erased" when the
//!    ledger knows the address's keyed hash).
//! 2. Record the erasure in the ledger ([`silo_tenancy::erasure`]): the keyed hash of the
//!    account id and every tenant it ever belonged to (`membership_history`: a member who left
//!    keeps their rows), each `pending`; end their sessions and revoke
//!    their tokens, so nothing is written as them while the tenants are erased.
//! 3. In every pending tenant, erase the person as the tenant manifest says
//!    ([`silo_workspace::erasure::erase`]), with the file to itself, `secure_delete` on and the
//!    WAL truncated ([`silo_tenancy::Erasures::in_file`]); record the outcome per tenant. A
//!    tenant that cannot be opened now is left pending and the job retries (with backoff)
//!    once the others are done.
//! 4. Delete the exports that hold the person: their subject exports, and the exports of the
//!    tenants they ever belonged to. (An export still running checks the ledger after its zip
//!    is in place and deletes it when it may hold an erased person, so none outlives this.)
//!    A workspace the person is the last owner of (with others in it) is handed to its
//!    longest-standing admin, else member; one nobody else belongs to is soft-deleted.
//! 5. In one control-plane transaction: delete the account, sessions, tokens, memberships,
//!    invitations, sign-ups, resets and mail to them; rename them in audit entries and jobs to
//!    `subject:<keyed hash>`; blank any job or mail that quotes their address; replace this
//!    job's own payload by the hash; mark the ledger entry complete; audit `subject.erase`.
//!    Then truncate `control.db`'s WAL (its connections run with `secure_delete`).
//!
//! A dry run ([`crate::subjects::Subjects::plan_erasure`]) answers the same steps as counts.

use std::collections::BTreeMap;

use crate::{Error, Result};
use serde_json::json;
use silo_core::db;
use silo_core::erasure::ErasureStep;
use silo_core::{TenantId, TenantRef, Timestamp};
use silo_jobs::{JobContext, JobError, Outcome, Workers};
use silo_tenancy::{Tenant, TenantStatus};

use crate::users::User;

/// Erases one person.
pub const SUBJECT_ERASE: &str = "subject.erase";

/// How often an erasure job is tried before it is dead-lettered: with the queue's backoff
/// (doubling, capped at 10 minutes) a tenant that stays unavailable is retried for hours.
pub const ERASE_ATTEMPTS: i64 = 30;

/// The rows of this crate's tables that erasure touches (see [`ErasureStep`] for the
/// arguments): sessions' hand-offs before sessions; the account row ([`ACCOUNT_ROW`]) comes
/// after every other crate's steps (its foreign keys cascade to nothing left).
const STEPS: &[ErasureStep] = &[
    ErasureStep {
        table: "handoffs",
        rows: "handoffs WHERE session_id IN (SELECT id_sha256 FROM sessions WHERE user_id = ?1)",
        set: None,
    },
    ErasureStep { table: "sessions", rows: "sessions WHERE user_id = ?1", set: None },
    ErasureStep { table: "api_tokens", rows: "api_tokens WHERE user_id = ?1", set: None },
    ErasureStep { table: "memberships", rows: "memberships WHERE user_id = ?1", set: None },
    ErasureStep { table: "membership_history", rows: "membership_history WHERE user_id = ?1", set: None },
    ErasureStep { table: "operators", rows: "operators WHERE user_id = ?1", set: None },
    ErasureStep { table: "password_resets", rows: "password_resets WHERE user_id = ?1", set: None },
    ErasureStep { table: "invitations", rows: "invitations WHERE email = ?2", set: None },
    // Invitations they sent lose their sender and, still pending, are revoked: nobody vouches
    // for them any more (as when a member leaves).
    ErasureStep {
        table: "invitations",
        rows: "invitations WHERE invited_by = ?1",
        set: Some(
            "invited_by = NULL, revoked_at = CASE WHEN accepted_at IS NULL THEN coalesce(revoked_at, ?6) ELSE revoked_at END",
        ),
    },
    ErasureStep { table: "signups", rows: "signups WHERE email = ?2", set: None },
    ErasureStep { table: "outbox", rows: "outbox WHERE recipient = ?2", set: None },
    ErasureStep {
        table: "outbox",
        rows: "outbox WHERE about_user_id = ?1",
        set: Some("subject = '[erased]', body = '[erased]', about_user_id = NULL"),
    },
    ErasureStep {
        table: "outbox",
        rows: "outbox WHERE instr(lower(body), ?2) > 0 OR instr(lower(subject), ?2) > 0 \
               OR (length(?5) >= 4 AND (instr(body, ?5) > 0 OR instr(subject, ?5) > 0))",
        set: Some("subject = '[erased]', body = '[erased]'"),
    },
];

/// The account row itself: the last step.
const ACCOUNT_ROW: ErasureStep = ErasureStep { table: "users", rows: "users WHERE id = ?1", set: None };

/// Every step of an erasure, in order: this crate's, the audit log's and the job queue's
/// (the crates below), those the crates above registered ([`crate::Accounts::add_erasure_steps`]),
/// the account row last.
pub(crate) fn steps(accounts: &crate::Accounts) -> Vec<ErasureStep> {
    let mut steps = STEPS.to_vec();
    steps.extend_from_slice(silo_core::audit::ERASURE_STEPS);
    steps.extend_from_slice(silo_jobs::queue::ERASURE_STEPS);
    steps.extend(accounts.registered_erasure_steps());
    steps.push(ACCOUNT_ROW);
    steps
}

/// The person erasure is about, with their ledger name.
struct Subject {
    user: User,
    /// Keyed hash of the account id.
    hash: String,
}

impl Subject {
    fn label(&self) -> String {
        format!("subject:{}", self.hash)
    }
}

/// Finds the account and its ledger name; `None` for an address no account has.
async fn find(accounts: &crate::Accounts, email: &str) -> Result<Option<Subject>> {
    let user = match accounts.users().by_email(email).await {
        Ok(user) => user,
        Err(Error::UnknownUser(_) | Error::Invalid { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let hash = accounts.tenancy().erasures().subject_of(&user.id).await?;
    Ok(Some(Subject { user, hash }))
}

/// Every tenant the person ever belonged to (a member who left keeps their rows there), in
/// any status (a purged one has nothing left to erase).
async fn tenants_of(accounts: &crate::Accounts, user_id: &str) -> Result<Vec<Tenant>> {
    let mut tenants = Vec::new();
    for id in tenant_ids_of(accounts, user_id).await? {
        let id: TenantId = id.parse()?;
        tenants.push(accounts.tenancy().tenant(&TenantRef::Id(id)).await?);
    }
    Ok(tenants)
}

/// The ids of every tenant the person belongs or ever belonged to.
async fn tenant_ids_of(accounts: &crate::Accounts, user_id: &str) -> Result<Vec<String>> {
    Ok(db::query_scalar(
        "SELECT tenant_id FROM membership_history WHERE user_id = ?1
         UNION SELECT tenant_id FROM memberships WHERE user_id = ?1 ORDER BY 1",
    )
    .bind(user_id)
    .fetch_all(accounts.tenancy().control().writer())
    .await?)
}

/// What erasing `email` would do: per tenant (by slug) and per control-plane table, counts.
pub(crate) async fn plan(accounts: &crate::Accounts, email: &str) -> Result<serde_json::Value> {
    let Some(subject) = find(accounts, email).await? else {
        return Ok(json!({ "found": false, "message": "no data: no account has this address" }));
    };
    let mut tenants = serde_json::Map::new();
    for tenant in tenants_of(accounts, &subject.user.id).await? {
        let count = silo_workspace::erasure::eraser(subject.user.id.to_string(), true);
        // A live tenant is counted through its open handle (no interruption); others have no
        // handle and are read with the file to themselves.
        let counts = if tenant.status == TenantStatus::Active {
            accounts.tenancy().db_for(&tenant).await?.turn().await.call_blocking(count).await?
        } else {
            accounts.tenancy().erasures().in_file(&tenant, count).await?.flatten()
        };
        tenants.insert(tenant.slug.to_string(), json!(counts.unwrap_or_default()));
    }
    let args = control_arguments(&subject, "", &accounts.now());
    let mut control = BTreeMap::<&str, i64>::new();
    for step in steps(accounts) {
        let sql = step.count();
        let mut query = db::query_scalar::<i64>(sqlx::AssertSqlSafe(sql.clone()));
        for arg in ErasureStep::arguments(&sql, &args) {
            query = query.bind(arg);
        }
        *control.entry(step.table).or_default() +=
            query.fetch_one(accounts.tenancy().control().writer()).await?;
    }
    control.retain(|_, n| *n > 0);
    // The exports whose zip is still there (older ones were deleted when they expired).
    let exports: Vec<String> = export_jobs(accounts, &subject)
        .await?
        .into_iter()
        .filter(|job| accounts.tenancy().exports().path(job).exists())
        .collect();
    Ok(json!({
        "found": true,
        "subject": subject.hash,
        "tenants": tenants,
        "control_plane": control,
        "exports": exports.len(),
    }))
}

fn control_arguments(subject: &Subject, job: &str, now: &Timestamp) -> [String; 6] {
    [
        subject.user.id.to_string(),
        subject.user.email.to_string(),
        subject.label(),
        job.to_owned(),
        subject.user.display_name.clone(),
        now.as_str().to_owned(),
    ]
}

/// The jobs whose export zip holds the person: their own subject exports, and exports of the
/// tenants they ever belonged to.
async fn export_jobs(accounts: &crate::Accounts, subject: &Subject) -> Result<Vec<String>> {
    let jobs = accounts.tenancy().jobs();
    let email = subject.user.email.to_string();
    let mut found =
        jobs.with_payload(crate::subjects::SUBJECT_EXPORT, "$.email", &[&email], i64::MAX).await?;
    let tenants: Vec<String> = tenant_ids_of(accounts, &subject.user.id).await?;
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    found.extend(jobs.with_payload(silo_tenancy::jobs::TENANT_EXPORT, "$.tenant", &tenants, i64::MAX).await?);
    let mut ids: Vec<String> = found.into_iter().map(|job| job.id).collect();
    ids.sort();
    Ok(ids)
}

/// Registers the erasure job.
pub fn register(workers: &mut Workers, accounts: &crate::Accounts) {
    let a = accounts.clone();
    workers.register(SUBJECT_ERASE, move |ctx| run(a.clone(), ctx));
}

async fn run(accounts: crate::Accounts, ctx: JobContext) -> Outcome {
    let tenancy = accounts.tenancy();
    // Its last step replaces the control plane's copies in the backup store: a process
    // without the backups refuses before changing anything (a worker that has them retries).
    tenancy.copies_for("an erasure").map_err(|e| JobError::retry(e.to_string()))?;
    let ledger = tenancy.erasures();
    // A run after step 5 finds only the hash in its payload: the work is done.
    if let Some(hash) = ctx.job.payload["subject"].as_str() {
        let erasure =
            ledger.get(hash).await?.ok_or_else(|| JobError::fatal("the ledger has no such subject"))?;
        // A run that failed at the copies' replacement comes back here: do it again
        // (idempotent: the newest copy replaces the older ones).
        tenancy.supersede_control_copies().await.map_err(|e| {
            JobError::retry(format!(
                "the control plane's copies in the backup store could not be replaced: {e}"
            ))
        })?;
        return Ok(
            json!({ "found": true, "subject": hash, "tenants": erasure.tenants, "completed_at": erasure.completed_at }),
        );
    }
    if ctx.job.payload.get("email_hash").is_some() {
        return Ok(json!({ "found": false, "message": "no data: no account has this address" }));
    }
    let email =
        ctx.job.payload["email"].as_str().ok_or_else(|| JobError::fatal("the payload names no email"))?;
    let Some(subject) = find(&accounts, email).await? else {
        // Nobody to erase; the request's address is not kept either (an erased person's
        // repeat request would otherwise put it back into control.db).
        let email_hash = ledger.email_hash(email).await?;
        let earlier = ledger.by_email_hash(&email_hash).await?;
        let (payload, result) = match earlier {
            Some(e) => (
                json!({ "subject": e.subject }),
                json!({ "found": false, "already_erased": true, "subject": e.subject, "completed_at": e.completed_at }),
            ),
            None => (
                json!({ "email_hash": email_hash }),
                json!({ "found": false, "message": "no data: no account has this address" }),
            ),
        };
        tenancy.jobs().replace_payload(&ctx.job.id, &payload).await?;
        tenancy.control().checkpoint_truncate().await?;
        return Ok(result);
    };
    // 2. The ledger first: from here on a restore forgets the person, whatever happens next.
    let tenants = tenants_of(&accounts, &subject.user.id).await?;
    let ids: Vec<TenantId> = tenants.iter().map(|t| t.id).collect();
    let email_hash = ledger.email_hash(subject.user.email.as_str()).await?;
    let erasure = ledger.record(&subject.hash, &email_hash, &ctx.job.id, &ids).await?;
    // Nobody acts as them from here on: no row can be written for them into a tenant already
    // erased while the others are.
    let actor = format!("job:{}", ctx.job.id);
    accounts.sessions().revoke_all(&subject.user.id).await?;
    accounts.tokens().revoke_all(&subject.user.id, &actor).await?;
    accounts.directory().clear();
    // 3. Every pending tenant.
    let total = tenants.len() as i64;
    let mut unavailable = Vec::new();
    for (done, tenant) in tenants.iter().enumerate() {
        if ctx.lost() {
            return Err(JobError::retry("no longer this run's job"));
        }
        if erasure.tenants[tenant.id.to_string()] != json!("pending") {
            continue;
        }
        let erase = silo_workspace::erasure::eraser(subject.user.id.to_string(), false);
        let erased = ledger.in_file(tenant, erase).await;
        let outcome = match erased {
            Ok(Some(counts)) => json!({ "slug": tenant.slug, "erased": counts.unwrap_or_default() }),
            Ok(None) => json!({ "slug": tenant.slug, "purged": true }),
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, error = %e, "erasure: tenant unavailable, retrying later");
                unavailable.push(format!("{}: {e}", tenant.slug));
                continue;
            }
        };
        ledger.tenant_done(&subject.hash, tenant.id, &outcome).await?;
        ctx.progress(done as i64 + 1, total + 1);
    }
    if !unavailable.is_empty() {
        return Err(JobError::retry(format!("tenants not erased yet: {}", unavailable.join("; "))));
    }
    // 4. Exports holding the person.
    let mut exports = 0;
    for job in export_jobs(&accounts, &subject).await? {
        let removed = tenancy.exports().remove(&job);
        exports +=
            usize::from(removed.map_err(|e| JobError::retry(format!("cannot delete export {job}: {e}")))?);
    }
    // A workspace the person was the last owner of does not stay without one: its
    // longest-standing admin (else member) takes over. (Idempotent: once someone took over, the
    // person is no longer the last owner.)
    let heirs = hand_over(&accounts, &subject, &actor).await?;
    // A workspace nobody else belongs to is closed (soft-deleted: an operator can bring it back
    // within the grace period, then it is purged), not left open to no one.
    let closed = close_unattended(&accounts, &subject, &actor).await?;
    // 5. The control plane, all at once.
    let control = remove_records(&accounts, &subject, &ctx.job.id, exports).await?;
    tenancy.control().checkpoint_truncate().await?;
    // The control plane's copies in the backup store held them too: a copy without them
    // replaces every older one.
    let copies_replaced = tenancy.supersede_control_copies().await.map_err(|e| {
        JobError::retry(format!("the control plane's copies in the backup store could not be replaced: {e}"))
    })?;
    accounts.directory().clear();
    ctx.progress(total + 1, total + 1);
    let erasure = ledger.get(&subject.hash).await?;
    Ok(json!({
        "found": true,
        "subject": subject.hash,
        "tenants": erasure.map(|e| e.tenants),
        "control_plane": control,
        "exports_deleted": exports,
        "control_copies_replaced": copies_replaced,
        "new_owners": heirs,
        "closed_workspaces": closed,
    }))
}

/// Soft-deletes every live workspace the person is the only member of; returns their slugs.
async fn close_unattended(accounts: &crate::Accounts, subject: &Subject, actor: &str) -> Result<Vec<String>> {
    let alone: Vec<String> = db::query_scalar(
        "SELECT m.tenant_id FROM memberships m WHERE m.user_id = ?1
           AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = m.tenant_id AND o.user_id <> ?1)",
    )
    .bind(subject.user.id.to_string())
    .fetch_all(accounts.tenancy().control().writer())
    .await?;
    let tenants = accounts.tenancy().control().tenants_by_ids(&alone).await?;
    let mut slugs = Vec::new();
    for tenant in alone.iter().filter_map(|id| tenants.get(id)) {
        if matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
            let deleted = accounts.tenancy().tenants().delete(&TenantRef::Id(tenant.id), actor).await?;
            slugs.push(deleted.slug.to_string());
        }
    }
    Ok(slugs)
}

/// For every active workspace where the person is the only owner and others are members,
/// makes the longest-standing admin (else member) an owner; returns the workspaces' slugs.
async fn hand_over(accounts: &crate::Accounts, subject: &Subject, actor: &str) -> Result<Vec<String>> {
    let heirs: Vec<(String, String)> = db::query_as(
        "SELECT m.tenant_id,
                (SELECT u.email FROM memberships o JOIN users u ON u.id = o.user_id
                 WHERE o.tenant_id = m.tenant_id AND o.user_id <> ?1
                 ORDER BY o.role = 'admin' DESC, o.created_at, o.user_id LIMIT 1)
         FROM memberships m
         WHERE m.user_id = ?1 AND m.role = 'owner'
           AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = m.tenant_id AND o.role = 'owner' AND o.user_id <> ?1)
           AND EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = m.tenant_id AND o.user_id <> ?1)",
    )
    .bind(subject.user.id.to_string())
    .fetch_all(accounts.tenancy().control().writer())
    .await?;
    let ids: Vec<String> = heirs.iter().map(|(id, _)| id.clone()).collect();
    let tenants = accounts.tenancy().control().tenants_by_ids(&ids).await?;
    let mut slugs = Vec::new();
    for (id, heir) in heirs {
        let Some(tenant) = tenants.get(&id).filter(|t| t.status == TenantStatus::Active) else {
            continue;
        };
        accounts.memberships().add(&TenantRef::Id(tenant.id), &heir, crate::Role::Owner, actor).await?;
        slugs.push(tenant.slug.to_string());
    }
    Ok(slugs)
}

async fn remove_records(
    accounts: &crate::Accounts,
    subject: &Subject,
    job: &str,
    exports: usize,
) -> Result<BTreeMap<&'static str, u64>> {
    let now = accounts.now();
    let args = control_arguments(subject, job, &now);
    let mut counts = BTreeMap::<&str, u64>::new();
    let mut tx = accounts.tenancy().control().writer().begin().await?;
    for step in steps(accounts) {
        let sql = step.statement();
        let mut query = db::query(sqlx::AssertSqlSafe(sql.clone()));
        for arg in ErasureStep::arguments(&sql, &args) {
            query = query.bind(arg);
        }
        *counts.entry(step.table).or_default() += query.execute(&mut *tx).await?.rows_affected();
    }
    silo_jobs::queue::replace_payload_in(&mut tx, job, &json!({ "subject": subject.hash })).await?;
    silo_tenancy::Erasures::complete_in(&mut tx, &now, &subject.hash).await?;
    let detail = json!({ "subject": subject.hash, "exports_deleted": exports });
    silo_core::audit::record(&mut tx, &now, &format!("job:{job}"), "subject.erase", None, &detail).await?;
    tx.commit().await?;
    counts.retain(|_, n| *n > 0);
    Ok(counts)
}

/// "Delete my account" (self-service): with the password given again, purges the workspaces
/// the person is the only member of, signs them out everywhere and starts their erasure.
/// Refused while they are the last owner of a workspace that has other members: they hand
/// it over (make someone an owner) or delete it first.
pub(crate) async fn close_account(
    accounts: &crate::Accounts,
    user_id: &str,
    password: &str,
) -> Result<silo_jobs::Job> {
    let user = accounts.users().by_id(user_id).await?;
    if accounts.users().authenticate(&user.email, password).await?.is_none() {
        return Err(Error::invalid("password", "That password is not right."));
    }
    let counted: Vec<(String, i64, i64)> = db::query_as(
        "SELECT m.tenant_id,
                (SELECT count(*) FROM memberships o WHERE o.tenant_id = m.tenant_id),
                (SELECT count(*) FROM memberships o WHERE o.tenant_id = m.tenant_id AND o.role = 'owner')
         FROM memberships m WHERE m.user_id = ?1 AND m.role = 'owner'",
    )
    .bind(user_id)
    .fetch_all(accounts.tenancy().control().writer())
    .await?;
    let ids: Vec<String> = counted.iter().map(|(id, _, _)| id.clone()).collect();
    let tenants = accounts.tenancy().control().tenants_by_ids(&ids).await?;
    let mut owned: Vec<(String, String, i64, i64)> = counted
        .into_iter()
        .filter_map(|(id, members, owners)| {
            let tenant = tenants.get(&id)?;
            // A held restore (an operator's, not yet released) neither blocks the closing nor is
            // deleted with it; the erasure reaches its file all the same.
            let live = matches!(
                tenant.status,
                TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Deleting
            ) && !tenant.held;
            live.then(|| (id, tenant.name.clone(), members, owners))
        })
        .collect();
    owned.sort_by(|a, b| a.1.cmp(&b.1));
    let handed_over: Vec<&str> = owned
        .iter()
        .filter(|(_, _, members, owners)| *members > 1 && *owners == 1)
        .map(|(_, name, _, _)| name.as_str())
        .collect();
    if !handed_over.is_empty() {
        return Err(Error::invalid(
            "workspace",
            format!(
                "You are the last owner of {}: make another member an owner, or delete the workspace, first.",
                handed_over.join(", ")
            ),
        ));
    }
    let actor = user.email.to_string();
    for (id, _, _, _) in owned.iter().filter(|(_, _, members, _)| *members == 1) {
        let tenant = TenantRef::Id(id.parse()?);
        let tenants = accounts.tenancy().tenants();
        match accounts.tenancy().tenant(&tenant).await?.status {
            // Suspended by the operators (an abuse review, an unpaid invoice): theirs to
            // decide, so it is not purged with the account; the erasure still reaches its file.
            TenantStatus::Suspended => continue,
            TenantStatus::Deleting => {}
            _ => {
                tenants.delete(&tenant, &actor).await?;
            }
        }
        tenants.purge(&tenant, &actor).await?;
    }
    accounts.sessions().revoke_all(user_id).await?;
    accounts.subjects().start_erasure(&user.email, &actor).await
}
