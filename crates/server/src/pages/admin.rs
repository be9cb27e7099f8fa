//! The operators' console under `/admin`: the tenant list (search, filters, sort, pages),
//! a tenant's detail and lifecycle actions, the fleet view and the audit log. Anyone who is
//! not an operator gets 404 (see [`crate::sessions::Operator`]).

use actix_web::{HttpRequest, get, post, web};
use serde::Deserialize;
use silo_backups::BackupsExt;
use silo_core::{TenantId, TenantRef};
use silo_jobs::JobStatus;
use silo_tenancy::{CreateTenant, TenantQuery, TenantSort, TenantStatus};
use silo_workspace::activity;
use silo_workspace::migrations as tenant_migrations;

use super::account::NoFields;
use super::{
    Page, PageResult, flash_outcome, flash_outcome_with, page_offset, sentence, tenancy_refusal,
    workspace_form_flash,
};
use crate::csrf::CsrfForm;
use crate::error::{Failure, PageError};
use crate::redirects::{see_other_with_flash, see_other_with_form_error};
use crate::request::state;
use crate::sessions::Operator;

const PER_PAGE: i64 = 50;

/// Registers the console.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(tenants_page)
        .service(provision_page)
        .service(tenant_page)
        .service(act_page)
        .service(fleet_page)
        .service(audit_page)
        .service(jobs_page)
        .service(requests_page)
        .service(job_action);
}

#[derive(Deserialize, serde::Serialize, Default)]
struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    region: Option<String>,
    plan: Option<String>,
    sort: Option<String>,
    page: Option<i64>,
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

#[get("/admin")]
async fn tenants_page(req: HttpRequest, _op: Operator, query: web::Query<ListQuery>) -> PageResult {
    let tenancy = state(&req).tenancy();
    let (page, offset) = page_offset(query.page, PER_PAGE);
    let status = match nonempty(&query.status) {
        Some(s) => Some(s.parse::<TenantStatus>().map_err(|_| Failure::invalid("unknown status"))?),
        None => None,
    };
    let search = TenantQuery {
        search: nonempty(&query.q),
        status,
        region: nonempty(&query.region),
        plan: nonempty(&query.plan),
        sort: query.sort.as_deref().and_then(TenantSort::parse).unwrap_or_default(),
        offset,
        limit: PER_PAGE,
    };
    let (rows, total) = tenancy.tenants().search(&search).await?;
    let pages = (total + PER_PAGE - 1) / PER_PAGE;
    // The pager keeps the filters: the query string without `page`.
    let keep =
        serde_urlencoded::to_string(ListQuery { page: None, ..query.into_inner() }).unwrap_or_default();
    Page::new("admin/tenants.html")
        .with("money", &state(&req).billing.invoices().overview().await?)
        .with("plans", &state(&req).billing.plans().names().collect::<Vec<_>>())
        .with("tenants", &rows)
        .with("total", &total)
        .with("page", &page)
        .with("pages", &pages)
        .with("keep", &keep)
        .with("q", &search.search)
        .with("filter", &serde_json::json!({ "status": status, "region": search.region, "plan": search.plan, "sort": query_sort(search.sort) }))
        .with("regions", &tenancy.placement().names())
        .with("default_region", &tenancy.settings().default_region)
        .render(&req)
        .await
}

fn query_sort(sort: TenantSort) -> &'static str {
    match sort {
        TenantSort::Slug => "slug",
        TenantSort::Name => "name",
        TenantSort::Newest => "newest",
        TenantSort::Oldest => "oldest",
    }
}

#[derive(Deserialize)]
struct ProvisionForm {
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    owner: String,
}

#[post("/admin/tenants")]
async fn provision_page(
    req: HttpRequest,
    op: Operator,
    CsrfForm(form): CsrfForm<ProvisionForm>,
) -> PageResult {
    let accounts = state(&req).accounts();
    let request = CreateTenant {
        slug: form.slug.trim().to_owned(),
        name: nonempty(&Some(form.name.clone())),
        region: nonempty(&Some(form.region.clone())),
        plan: nonempty(&Some(form.plan.clone())),
    };
    let operator = accounts.users().by_email(&op.session.email).await?;
    let owner = nonempty(&Some(form.owner.clone()));
    let provisioned = state(&req)
        .billing
        .subscriptions()
        .provision(request, owner.as_deref(), &operator, state(&req).links.origin())
        .await;
    let (tenant, invited) = match provisioned {
        Ok(done) => done,
        Err(e) if e.is_user_error() => {
            let (field, message) = match &e {
                silo_billing::Error::Tenancy(t) => tenancy_refusal(t),
                silo_billing::Error::Accounts(a) => {
                    // The owner's address is the `owner` field here.
                    let flash = workspace_form_flash(a);
                    ((flash.field.as_deref() == Some("email")).then_some("owner"), flash.message)
                }
                silo_billing::Error::Invalid { field, message } => (Some(*field), sentence(message)),
                other => (None, sentence(&other.to_string())),
            };
            let typed = [
                ("slug", form.slug.as_str()),
                ("name", &form.name),
                ("region", &form.region),
                ("plan", &form.plan),
                ("owner", &form.owner),
            ];
            return Ok(see_other_with_form_error("/admin", field, &message, &typed));
        }
        Err(e) => return Err(e.into()),
    };
    let done = match invited {
        Some(invitation) => format!(
            "Tenant provisioned. {} has no account yet: an invitation to own it was emailed.",
            invitation.email
        ),
        None => "Tenant provisioned.".to_owned(),
    };
    Ok(see_other_with_flash(&format!("/admin/tenants/{}", tenant.id), "ok", &done))
}

fn tenant_id(raw: &str) -> Result<TenantId, Failure> {
    raw.parse().map_err(|_| Failure::not_found())
}

#[get("/admin/tenants/{id}")]
async fn tenant_page(req: HttpRequest, _op: Operator, id: web::Path<String>) -> PageResult {
    let tenancy = state(&req).tenancy();
    let accounts = state(&req).accounts();
    let tenant = tenancy.tenants().by_id(tenant_id(&id)?).await?;
    let path = tenancy.tenant_path(&tenant)?;
    let bytes = silo_storage::sqlite::database_size(&path);
    let file_size = format!("{:.1} MiB ({bytes} bytes, with -wal)", bytes as f64 / (1024.0 * 1024.0));
    // Last activity is read from the tenant's file, which is open only for active tenants.
    let last_activity = if tenant.status == TenantStatus::Active && tenant.migration_error.is_none() {
        match tenancy.db(tenant.id).await {
            Ok(db) => activity::last_at(&db.turn().await)?,
            Err(e) => Some(format!("(cannot open: {e})")),
        }
    } else {
        None
    };
    let backups: Vec<serde_json::Value> = tenancy
        .backups()
        .of_tenant(tenant.id)
        .await?
        .iter()
        .take(50)
        .map(|b| {
            serde_json::json!({
                "id": b.id, "created_at": b.created_at, "kind": b.kind,
                "size": silo_core::units::bytes(b.size as u64), "db_size": silo_core::units::bytes(b.db_size as u64),
                "schema_version": b.schema_version, "verified_at": b.verified_at, "verify_error": b.verify_error,
            })
        })
        .collect();
    // A store that does not answer leaves the window out, not the page.
    let restorable = match tenancy.backups().restorable(&tenant).await {
        Ok(window) => Some(window),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, error = %e, "the restorable window could not be read");
            None
        }
    };
    let regions: Vec<String> =
        tenancy.placement().names().into_iter().filter(|r| tenant.region != r.as_str()).collect();
    let billing = &state(&req).billing;
    let now = billing.now();
    let invoices: Vec<_> = billing
        .invoices()
        .list(&silo_billing::InvoiceFilter { tenant: Some(tenant.id), limit: 24, ..Default::default() })
        .await?
        .iter()
        .map(|i| super::billing::shown(i, now.as_str()))
        .collect();
    Page::new("admin/tenant.html")
        .with("invoices", &invoices)
        .with("contact", &billing.profiles().get(tenant.id).await?)
        .with("countries", &silo_billing::countries::by_name())
        .with("plans", &billing.plans().names().collect::<Vec<_>>())
        .with(
            "usage_chart",
            &super::charts::requests_per_day(&state(&req).billing.metering().days(tenant.id, 30).await?),
        )
        .with("backups", &backups)
        .with("restorable", &restorable)
        .with("regions", &regions)
        .with("tenant", &tenant)
        .with("file_size", &file_size)
        .with("members", &accounts.memberships().count(tenant.id).await?)
        .with("last_activity", &last_activity)
        .with("audit", &tenancy.tenants().audit_of(tenant.id, 50).await?)
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    confirm: String,
    /// Restore/verify: the backup id (empty: the newest).
    #[serde(default)]
    backup: String,
    /// Restore: a new slug to restore into instead of in place.
    #[serde(default)]
    as_slug: String,
    /// Restore: a moment (UTC) instead of a backup.
    #[serde(default)]
    at: String,
    /// Move: the target region.
    #[serde(default)]
    region: String,
    /// Plan: the new plan.
    #[serde(default)]
    plan: String,
}

/// Lifecycle and storage actions; purge and in-place restore need the slug typed as
/// confirmation.
#[post("/admin/tenants/{id}/{action}")]
async fn act_page(
    req: HttpRequest,
    op: Operator,
    path: web::Path<(String, String)>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> PageResult {
    let tenancy = state(&req).tenancy();
    let (id, action) = path.into_inner();
    let id = tenant_id(&id)?;
    let tenant = tenancy.tenants().by_id(id).await?;
    let reference = TenantRef::Id(id);
    let actor = op.session.email.as_str();
    let back = format!("/admin/tenants/{id}");
    let done = |message: String| Ok(see_other_with_flash(&back, "ok", &message));
    if action == "plan" {
        let changed = state(&req).billing.subscriptions().change(&reference, form.plan.trim(), actor).await;
        return flash_outcome_with(&back, changed.map(|t| format!("Plan changed to {}.", t.plan)), done);
    }
    let result = match action.as_str() {
        "suspend" => {
            tenancy.tenants().suspend(&reference, actor).await.map(|_| "Tenant suspended.".to_owned())
        }
        "resume" => tenancy.tenants().resume(&reference, actor).await.map(|_| "Tenant resumed.".to_owned()),
        // The undo of a delete, during its grace period (the scheduled purge is cancelled).
        "undelete" => tenancy
            .tenants()
            .undelete(&reference, actor)
            .await
            .map(|_| "Tenant brought back: it serves again, and its purge is cancelled.".to_owned()),
        "delete" => tenancy
            .tenants()
            .delete(&reference, actor)
            .await
            .map(|_| "Tenant deleted (soft); purge removes its files.".to_owned()),
        "purge" => {
            if tenant.slug != form.confirm.trim() {
                return Ok(see_other_with_flash(
                    &back,
                    "error",
                    "Type the tenant's slug exactly to purge it.",
                ));
            }
            tenancy.tenants().purge(&reference, actor).await.map(|_| {
                "Tenant purged: its files and backups are gone, its backup key destroyed.".to_owned()
            })
        }
        "backup" => tenancy
            .backups()
            .create(&reference, silo_backups::BackupKind::Manual, actor)
            .await
            .map(|b| format!("Backed up: backup {}.", b.id)),
        "verify" => {
            tenancy.backups().verify(&reference, nonempty(&Some(form.backup.clone())).as_deref()).await.map(
                |v| {
                    format!("Backup {} verified: checksum, decryption and integrity check pass.", v.backup.id)
                },
            )
        }
        "restore" => {
            let backup = nonempty(&Some(form.backup.clone()));
            let as_slug = nonempty(&Some(form.as_slug.clone()));
            if as_slug.is_none() && tenant.slug != form.confirm.trim() {
                return Ok(see_other_with_flash(
                    &back,
                    "error",
                    "Type the tenant's slug exactly to restore it in place.",
                ));
            }
            let at = match nonempty(&Some(form.at.clone())) {
                None => None,
                Some(at) => match silo_core::Timestamp::parse_moment(&at) {
                    Ok(at) => Some(at),
                    Err(e) => {
                        return Ok(see_other_with_flash(
                            &back,
                            "error",
                            &format!("The moment to restore to: {e}."),
                        ));
                    }
                },
            };
            let restored = match &at {
                Some(at) => tenancy.backups().restore_to(&reference, at, as_slug.as_deref(), actor).await,
                None => {
                    tenancy.backups().restore(&reference, backup.as_deref(), as_slug.as_deref(), actor).await
                }
            };
            let moment = |r: &silo_backups::restore::Restored| match (&r.at, &r.reached) {
                (Some(at), Some(reached)) => format!(
                    " to {at} (its last commit by then: {reached}; {} commits replayed after backup {})",
                    r.commits_replayed, r.backup.id
                ),
                _ => format!(" from backup {} of {}", r.backup.id, r.backup.created_at),
            };
            match restored {
                Ok(restored) if as_slug.is_some() => {
                    let message =
                        format!("Restored{} as new tenant {}.", moment(&restored), restored.tenant.slug);
                    return Ok(see_other_with_flash(
                        &format!("/admin/tenants/{}", restored.tenant.id),
                        "ok",
                        &message,
                    ));
                }
                Ok(restored) => Ok(format!(
                    "Restored{}; the tenant was unavailable for {:.1} ms.",
                    moment(&restored),
                    restored.unavailable.as_secs_f64() * 1000.0
                )),
                Err(e) => Err(e),
            }
        }
        "move" => tenancy.backups().relocations().relocate(&reference, form.region.trim(), actor).await.map(
            |moved| {
                format!(
                    "Moved from {} to {}; the tenant was unavailable for {:.1} ms.",
                    moved.from, moved.tenant.region, moved.unavailable_ms
                )
            },
        ),
        "migrate" => {
            let summary =
                tenancy.fleet().migrate(vec![tenant], tenant_migrations(), 1, true, &|_| {}).await?;
            Ok(match summary.failures.first() {
                Some(failure) => format!("Migration failed: {}", failure.error),
                None if summary.already_current > 0 => {
                    format!("Already at schema {}: nothing to migrate.", summary.target_version)
                }
                None => format!("Migrated to schema {}.", summary.target_version),
            })
        }
        _ => return Err(Failure::not_found().into()),
    };
    flash_outcome_with(&back, result, done)
}

#[get("/admin/fleet")]
async fn fleet_page(req: HttpRequest, _op: Operator) -> PageResult {
    let tenancy = state(&req).tenancy();
    let histogram = tenancy.fleet().schema_histogram().await?;
    let widest = histogram.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let bars: Vec<serde_json::Value> = histogram
        .iter()
        .map(|(version, count)| serde_json::json!({ "version": version, "count": count, "width": (count * 100 / widest).max(1) }))
        .collect();
    Page::new("admin/fleet.html")
        .with("bars", &bars)
        .with("latest", &silo_tenancy::schema::latest_version(tenant_migrations()))
        .with("statuses", &tenancy.fleet().status_counts().await?)
        .with("quarantined", &tenancy.fleet().quarantined(100).await?)
        .with("cache", &tenancy.cache().stats())
        .with("scheduler", &tenancy.backups().scheduler_status())
        .with("engine", &tenancy.control_plane_name())
        .with("nodes", &tenancy.nodes().list().await?)
        .with("takeovers", &tenancy.ownership().map(|o| o.takeovers()))
        .with("disk", &tenancy.disk_space().ok().map(|d| {
            serde_json::json!({
                "available_mb": d.available / 1_000_000, "total_mb": d.total / 1_000_000, "low": d.is_low(),
            })
        }))
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<i64>,
    action: Option<String>,
}

#[get("/admin/audit")]
async fn audit_page(req: HttpRequest, _op: Operator, query: web::Query<AuditQuery>) -> PageResult {
    let action = nonempty(&query.action);
    let entries = state(&req).tenancy().audit_log(query.before, action.as_deref(), PER_PAGE + 1).await?;
    let more = entries.len() as i64 > PER_PAGE;
    let entries: Vec<_> = entries.into_iter().take(PER_PAGE as usize).collect();
    // Each entry's tenant by its slug (a purged one's row keeps its id: `purged-…`).
    let ids: Vec<String> = entries.iter().filter_map(|e| e.tenant_id.clone()).collect();
    let mut slugs = slugs_by_id(&req, &ids).await?;
    for id in ids {
        slugs.entry(id.clone()).or_insert(id);
    }
    // The person an entry is about (`detail.user`), by email; an erased one is said so.
    let mut people: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for entry in &entries {
        let Some(user) = entry.detail.get("user").and_then(|u| u.as_str()) else { continue };
        if !people.contains_key(user) {
            let email = match state(&req).accounts().users().by_id(user).await {
                Ok(found) => found.email.to_string(),
                Err(_) => "an account since deleted".to_owned(),
            };
            people.insert(user.to_owned(), email);
        }
    }
    Page::new("admin/audit.html")
        .with("next_before", &more.then(|| entries.last().map(|e| e.id)).flatten())
        .with("slugs", &slugs)
        .with("people", &people)
        .with("entries", &entries)
        .with("action", &action)
        .render(&req)
        .await
}

/// The slugs of the tenants with these ids that still exist, by id (the console names
/// tenants, not UUIDs).
async fn slugs_by_id(
    req: &HttpRequest,
    ids: &[String],
) -> Result<std::collections::HashMap<String, String>, PageError> {
    let found = state(req).tenancy().tenants().by_ids(ids).await?;
    Ok(found.into_iter().map(|(id, tenant)| (id, tenant.slug.to_string())).collect())
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
}

/// The durable jobs, newest first: kind, status, attempts, progress, result or last error.
#[get("/admin/jobs")]
async fn jobs_page(req: HttpRequest, _op: Operator, query: web::Query<JobsQuery>) -> PageResult {
    let status = nonempty(&query.status);
    let filter =
        status.clone().map(JobStatus::try_from).transpose().map_err(|e| Failure::invalid(e.to_string()))?;
    let jobs = state(&req).tenancy().jobs().list(filter, 100).await?;
    // Which tenant each job is about, by slug (a purged one has none left).
    let ids: Vec<String> =
        jobs.iter().filter_map(|j| j.payload["tenant"].as_str().map(str::to_owned)).collect();
    let tenants = slugs_by_id(&req, &ids).await?;
    Page::new("admin/jobs.html")
        .with("jobs", &jobs)
        .with("tenants", &tenants)
        .with("status", &status)
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct RequestsQuery {
    /// `all`: done and cancelled ones too.
    show: Option<String>,
}

/// Data-subject requests (exports, erasures, tenant exports) with their deadlines; open ones
/// by default, overdue ones marked.
#[get("/admin/requests")]
async fn requests_page(req: HttpRequest, _op: Operator, query: web::Query<RequestsQuery>) -> PageResult {
    let all = query.show.as_deref() == Some("all");
    let requests = state(&req).accounts().subjects().requests(!all, 200).await?;
    // A workspace's export is about the workspace: named by its slug.
    let ids: Vec<String> =
        requests.iter().filter_map(|r| r.subject.strip_prefix("tenant:").map(str::to_owned)).collect();
    let slugs = slugs_by_id(&req, &ids).await?;
    Page::new("admin/requests.html")
        .with("requests", &requests)
        .with("slugs", &slugs)
        .with("all", &all)
        .with("deadline_days", &silo_accounts::subjects::DEADLINE_DAYS)
        .render(&req)
        .await
}

/// Cancels or retries a job.
#[post("/admin/jobs/{id}/{action}")]
async fn job_action(
    req: HttpRequest,
    op: Operator,
    path: web::Path<(String, String)>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let (id, action) = path.into_inner();
    let jobs = state(&req).tenancy().jobs();
    let actor = op.session.email.as_str();
    let done = match action.as_str() {
        "cancel" => jobs.cancel(&id, actor).await,
        "retry" => jobs.retry(&id, actor).await,
        _ => return Err(Failure::not_found().into()),
    };
    flash_outcome(
        "/admin/jobs",
        done,
        if action == "cancel" { "Job cancelled." } else { "Job queued again." },
    )
}
