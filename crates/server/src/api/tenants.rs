//! The operator API: list, provision, inspect, change and delete tenants.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use silo_backups::BackupsExt;
use silo_core::TenantRef;
use silo_tenancy::{CreateTenant, Tenant, TenantQuery, TenantSort, TenantStatus};
use utoipa::{IntoParams, ToSchema};

use super::auth::OperatorToken;
use super::{Body, NoParams, Params};
use super::{ErrorBody, cursor, limit};
use crate::error::{ApiError, Failure};
use crate::request::state;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_tenants)
        .service(create_tenant)
        .service(get_tenant)
        .service(update_tenant)
        .service(delete_tenant)
        .service(restorable)
        .service(restore_tenant)
        .service(move_tenant);
}

/// Where to move a tenant: one of `node` or `region`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// A server of the cluster (`[cluster] node`): the tenant goes there through the backup
    /// store.
    pub node: Option<String>,
    /// A region of this server: the file is copied there.
    pub region: Option<String>,
}

/// What a move did.
#[derive(Serialize, ToSchema)]
pub struct MoveOutcome {
    /// The tenant.
    pub tenant: Tenant,
    /// Where it was: a node or a region.
    pub from: String,
    /// Where it is now.
    pub to: String,
    /// The backup taken before the move.
    pub backup: String,
    /// How long the tenant was unavailable here, ms (after a move to another server, that
    /// server serves it from its first request, once it replayed the last commits).
    pub unavailable_ms: f64,
    /// A move to another server: whether that server prepared the tenant before the switch
    /// (restored it from the store while it still served here); if not, it restores the whole
    /// tenant at its first request. `null` for a region move.
    pub prepared: Option<bool>,
}

/// Moves a tenant to another server of the cluster (`node`) or another region (`region`).
/// Sent to any server, it runs on the tenant's.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), request_body = MoveRequest, responses(
    (status = 200, body = MoveOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/tenants/{id}/move")]
async fn move_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    id: web::Path<String>,
    _params: Params<NoParams>,
    body: Body<MoveRequest>,
) -> Result<web::Json<MoveOutcome>, ApiError> {
    let relocations = state(&req).tenancy().backups().relocations();
    let target = reference(&id)?;
    let actor = op.0.email.as_str();
    let outcome = match (body.node.as_deref().map(str::trim), body.region.as_deref().map(str::trim)) {
        (Some(node), None) if !node.is_empty() => {
            let moved = relocations.to_node(&target, node, actor).await?;
            let backup = moved.backup.id;
            MoveOutcome {
                tenant: moved.tenant,
                from: moved.from,
                to: moved.to,
                backup,
                unavailable_ms: moved.unavailable_ms,
                prepared: Some(moved.prepared),
            }
        }
        (None, Some(region)) if !region.is_empty() => {
            let moved = relocations.relocate(&target, region, actor).await?;
            let (from, to) = (moved.from.to_string(), moved.tenant.region.to_string());
            MoveOutcome {
                tenant: moved.tenant,
                from,
                to,
                backup: moved.backup.id,
                unavailable_ms: moved.unavailable_ms,
                prepared: None,
            }
        }
        _ => return Err(ApiError(Failure::invalid("give one of `node` or `region`"))),
    };
    Ok(web::Json(outcome))
}

/// A page of tenants.
#[derive(Serialize, ToSchema)]
pub struct TenantPage {
    /// The tenants.
    pub items: Vec<Tenant>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
    /// Tenants matching the filters.
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Part of the slug or the name (case-insensitive).
    q: Option<String>,
    /// `active`, `suspended`, `deleting` or `deleted`.
    #[param(value_type = Option<TenantStatus>)]
    status: Option<String>,
    /// Region.
    region: Option<String>,
    /// Plan.
    plan: Option<String>,
    /// `slug` (default), `name`, `newest`, `oldest`.
    #[param(value_type = Option<TenantSort>)]
    sort: Option<String>,
    /// Page size (1–100, default 20).
    limit: Option<i64>,
    /// From the previous page's `next_cursor` (digits).
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
}

/// Lists tenants.
#[utoipa::path(tag = "operator", params(ListParams), responses(
    (status = 200, body = TenantPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/tenants")]
async fn list_tenants(
    req: actix_web::HttpRequest,
    _op: OperatorToken,
    params: Params<ListParams>,
) -> Result<web::Json<TenantPage>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| s.parse::<TenantStatus>())
        .transpose()
        .map_err(|e| ApiError(Failure::invalid(e.to_string()).on_field("status")))?;
    let offset = cursor(params.cursor.as_deref())?.unwrap_or(0).max(0);
    let limit = limit(params.limit);
    let query = TenantQuery {
        search: params.q.clone(),
        status,
        region: params.region.clone(),
        plan: params.plan.clone(),
        sort: match params.sort.as_deref() {
            None => TenantSort::default(),
            Some(sort) => TenantSort::parse(sort).ok_or_else(|| {
                ApiError(Failure::invalid("`sort` is `slug`, `name`, `newest` or `oldest`.").on_field("sort"))
            })?,
        },
        offset,
        limit,
    };
    let (tenants, total) = state(&req).tenancy().tenants().search(&query).await?;
    let next = offset + tenants.len() as i64;
    let next_cursor = (next < total && !tenants.is_empty()).then(|| next.to_string());
    Ok(web::Json(TenantPage { items: tenants, next_cursor, total }))
}

/// A tenant to provision.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantRequest {
    /// Slug (`[a-z0-9-]{3,63}`, no leading, trailing or double dash, not a reserved word).
    #[schema(min_length = 3, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: String,
    /// Display name (default: the slug; up to 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Region (default: the configured default).
    pub region: Option<String>,
    /// Plan (default `free`).
    pub plan: Option<String>,
    /// An existing account to make its owner.
    #[schema(format = Email)]
    pub owner_email: Option<String>,
}

/// Provisions a tenant.
#[utoipa::path(tag = "operator", request_body = NewTenantRequest, responses(
    (status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/tenants")]
async fn create_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    _params: Params<NoParams>,
    body: Body<NewTenantRequest>,
) -> Result<HttpResponse, ApiError> {
    let accounts = state(&req).accounts();
    let body = body.0;
    let owner = match &body.owner_email {
        Some(owner) => Some(
            accounts.users().by_email(owner).await.map_err(|e| ApiError::from(e).on_field("owner_email"))?,
        ),
        None => None,
    };
    let request = CreateTenant { slug: body.slug, name: body.name, region: body.region, plan: body.plan };
    let created =
        state(&req).billing.subscriptions().create_tenant(request, owner.as_ref(), &op.0.email).await;
    let tenant = created.map_err(|e| ApiError(Failure::creating(e)))?;
    Ok(HttpResponse::Created().json(tenant))
}

fn reference(raw: &str) -> Result<TenantRef, ApiError> {
    raw.parse().map_err(|_| ApiError(Failure::not_found()))
}

/// One tenant, by UUID or slug.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), responses(
    (status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/tenants/{id}")]
async fn get_tenant(
    req: actix_web::HttpRequest,
    _op: OperatorToken,
    id: web::Path<String>,
) -> Result<web::Json<Tenant>, ApiError> {
    Ok(web::Json(state(&req).tenancy().tenant(&reference(&id)?).await?))
}

/// Changes to a tenant; absent fields stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChanges {
    /// New display name (1–200 characters, not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// New plan.
    pub plan: Option<String>,
    /// `active` (resume) or `suspended` (suspend).
    pub status: Option<WantedStatus>,
}

/// What a tenant's status may be changed to through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WantedStatus {
    /// Resumed.
    Active,
    /// Suspended.
    Suspended,
}

/// Renames, re-plans, suspends or resumes a tenant.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), request_body = TenantChanges, responses(
    (status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/tenants/{id}")]
async fn update_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    id: web::Path<String>,
    _params: Params<NoParams>,
    body: Body<TenantChanges>,
) -> Result<web::Json<Tenant>, ApiError> {
    let tenancy = state(&req).tenancy();
    let mut tenant = tenancy.tenant(&reference(&id)?).await?;
    if tenant.status == TenantStatus::Deleted {
        return Err(silo_tenancy::Error::Gone(tenant.slug.to_string()).into());
    }
    let actor = op.0.email.as_str();
    // Every part is checked before any is applied: a bad plan or a status the tenant cannot
    // take changes no name.
    if let Some(plan) = &body.plan {
        state(&req).billing.plans().get(plan).map_err(|e| ApiError::from(e).on_field("plan"))?;
    }
    if body.status.is_some() && !matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
        return Err(silo_tenancy::Error::InvalidTransition {
            tenant: tenant.slug.to_string(),
            action: "suspend or resume",
            status: tenant.status.to_string(),
        }
        .into());
    }
    if let Some(name) = &body.name {
        silo_tenancy::control::display_name(name)?;
    }
    if let Some(name) = &body.name {
        tenant = tenancy.tenants().rename(tenant.id, name, actor).await?;
    }
    if let Some(plan) = &body.plan {
        tenant = state(&req).billing.subscriptions().change(&TenantRef::Id(tenant.id), plan, actor).await?;
    }
    let target = TenantRef::Id(tenant.id);
    tenant = match body.status {
        None => tenant,
        Some(WantedStatus::Suspended) if tenant.status != TenantStatus::Suspended => {
            tenancy.tenants().suspend(&target, actor).await?
        }
        Some(WantedStatus::Active) if tenant.status != TenantStatus::Active => {
            tenancy.tenants().resume(&target, actor).await?
        }
        Some(_) => tenant,
    };
    Ok(web::Json(tenant))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// Also remove the tenant's files now (otherwise it is soft-deleted: closed, files kept).
    purge: Option<bool>,
}

/// Deletes a tenant (soft), or purges it with `?purge=true`.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug"), DeleteParams), responses(
    (status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[delete("/tenants/{id}")]
async fn delete_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    id: web::Path<String>,
    params: Params<DeleteParams>,
) -> Result<web::Json<Tenant>, ApiError> {
    let tenancy = state(&req).tenancy();
    let tenant = tenancy.tenant(&reference(&id)?).await?;
    let target = TenantRef::Id(tenant.id);
    let actor = op.0.email.as_str();
    let mut tenant = match tenant.status {
        TenantStatus::Active | TenantStatus::Suspended => tenancy.tenants().delete(&target, actor).await?,
        _ => tenant,
    };
    if params.purge.unwrap_or(false) && tenant.status == TenantStatus::Deleting {
        tenant = tenancy.tenants().purge(&target, actor).await?;
    }
    Ok(web::Json(tenant))
}

/// The moments a tenant can be restored to (its oldest backup to the last commit in the
/// store, less the gaps), and what of it is not in the store yet.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), responses(
    (status = 200, body = silo_backups::restore::Restorable), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/tenants/{id}/restorable")]
async fn restorable(
    req: actix_web::HttpRequest,
    _op: OperatorToken,
    id: web::Path<String>,
) -> Result<web::Json<silo_backups::restore::Restorable>, ApiError> {
    let tenancy = state(&req).tenancy();
    let tenant = tenancy.tenant(&reference(&id)?).await?;
    Ok(web::Json(tenancy.backups().restorable(&tenant).await?))
}

/// A restore: to a moment, or from a backup; in place, or as a new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The moment (UTC, e.g. `2026-12-05T10:42:13Z`): the last commit at or before it that
    /// reached the store. Not with `backup`.
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")]
    pub at: Option<String>,
    /// A backup id (default: the newest). Not with `at`.
    pub backup: Option<String>,
    /// Restore into a new tenant with this slug instead of in place.
    #[schema(min_length = 3, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub as_slug: Option<String>,
}

/// What a restore did.
#[derive(Serialize, ToSchema)]
pub struct RestoreOutcome {
    /// The tenant restored into (the new one with `as_slug`).
    pub tenant: Tenant,
    /// The backup it started from.
    pub backup: String,
    /// The moment asked for.
    pub at: Option<String>,
    /// The moment the restored data is of: its last commit replayed (or the backup's).
    pub reached: Option<String>,
    /// Commits replayed after the backup.
    pub commits_replayed: usize,
    /// How long the tenant was unavailable (in place), ms.
    pub unavailable_ms: f64,
}

/// Restores a tenant in place (its current data is replaced; requests wait during the
/// switch) or, with `as_slug`, into a new tenant.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), request_body = RestoreRequest, responses(
    (status = 200, body = RestoreOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/tenants/{id}/restore")]
async fn restore_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    id: web::Path<String>,
    _params: Params<NoParams>,
    body: Body<RestoreRequest>,
) -> Result<web::Json<RestoreOutcome>, ApiError> {
    let tenancy = state(&req).tenancy();
    let target = reference(&id)?;
    let actor = op.0.email.as_str();
    // An empty `as_slug` is a mistake, not a request to restore in place.
    let as_slug = body.as_slug.as_deref().map(str::trim);
    match as_slug {
        Some("") => {
            return Err(ApiError(
                Failure::invalid("as_slug is empty: leave it out to restore in place").on_field("as_slug"),
            ));
        }
        // A bad new slug is the request's fault (422 naming it), not a tenant not found.
        Some(slug) => {
            silo_core::TenantSlug::parse(slug)
                .map_err(|e| ApiError(Failure::invalid(format!("as_slug: {e}")).on_field("as_slug")))?;
        }
        None => {}
    }
    let restored = match (&body.at, &body.backup) {
        (Some(_), Some(_)) => {
            return Err(ApiError(Failure::invalid("give `at` or `backup`, not both")));
        }
        (Some(at), None) => {
            let at = silo_core::Timestamp::parse_moment(at)
                .map_err(|e| ApiError(Failure::invalid(format!("at: {e}")).on_field("at")))?;
            tenancy.backups().restore_to(&target, &at, as_slug, actor).await?
        }
        (None, backup) => tenancy.backups().restore(&target, backup.as_deref(), as_slug, actor).await?,
    };
    Ok(web::Json(RestoreOutcome {
        backup: restored.backup.id.clone(),
        at: restored.at.as_ref().map(|t| t.to_string()),
        reached: restored.reached.as_ref().map(|t| t.to_string()),
        commits_replayed: restored.commits_replayed,
        unavailable_ms: restored.unavailable.as_secs_f64() * 1000.0,
        tenant: restored.tenant,
    }))
}
