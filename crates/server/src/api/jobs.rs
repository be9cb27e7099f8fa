//! Durable jobs over the operator API: start a tenant export, download an export, read a job,
//! list jobs.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use silo_jobs::{Job, JobStatus};
use utoipa::IntoParams;

use super::auth::OperatorToken;
use super::{ErrorBody, limit};
use super::{NoParams, Params};
use crate::error::{ApiError, Failure};
use crate::request::{client_addr, state};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(export_tenant).service(download_export).service(get_job).service(list_jobs);
}

/// Starts an export of a tenant (Art. 20): 202 with the job; once it is `done`, its result
/// names the zip (`<data_dir>/exports/<job id>.zip`). One export per tenant runs at a time (a
/// repeat answers 202 with the one in progress); a tenant's day's exports are bounded (422
/// when used up), and a nearly full disk refuses them (503 `disk_low`).
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "UUID or slug")), responses(
    (status = 202, body = Job), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
#[post("/tenants/{id}/export")]
async fn export_tenant(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    id: web::Path<String>,
    _params: Params<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let tenancy = state(&req).tenancy();
    let reference = id.parse().map_err(|_| ApiError(Failure::not_found()))?;
    let tenant = tenancy.tenant(&reference).await?;
    if tenant.status == silo_tenancy::TenantStatus::Deleted {
        return Err(silo_tenancy::Error::Gone(tenant.slug.to_string()).into());
    }
    Ok(accepted(tenancy.exports().start(tenant.id, op.0.email.as_str()).await?.job().clone()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LinkParams {
    /// Unix time after which the link no longer works.
    expires: u64,
    /// The link's signature.
    signature: String,
}

/// Downloads an export through the link in its job's result (`result.download`). The link is
/// the credential: it works without a token until it expires (then 410, and the zip is
/// deleted); a changed expiry or signature finds nothing (404). The zip is streamed from disk;
/// downloads at once are bounded per link and per client (429 with `Retry-After` beyond).
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "The export job's id"), LinkParams),
    security(()), responses(
    (status = 200, description = "The zip", content_type = "application/zip"), (status = 404, body = ErrorBody),
    (status = 410, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[get("/exports/{id}")]
async fn download_export(
    req: actix_web::HttpRequest,
    id: web::Path<String>,
    link: Params<LinkParams>,
) -> Result<HttpResponse, ApiError> {
    let app = state(&req);
    let path = app.tenancy().exports().open_link(&id, link.expires, &link.signature).await?;
    let client = client_addr(&req);
    let Some(slot) = app.downloads.admit(&id, &client) else {
        let failure = Failure::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "This export is being downloaded as many times at once as allowed; retry when a download has finished.",
        );
        return Err(ApiError(failure.retry_after(std::time::Duration::from_secs(5))));
    };
    let (size, chunks) = crate::downloads::stream(&path, slot).await.map_err(|e| {
        let error = silo_storage::Error::Io { action: "read export", path: path.clone(), source: e };
        ApiError(Failure::from(silo_tenancy::Error::Storage(error)))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"export-{id}.zip\"")))
        .insert_header(("Cache-Control", "no-store"))
        .body(actix_web::body::SizedStream::new(size, chunks)))
}

/// 202 with the job, and where to follow it.
pub(super) fn accepted(job: Job) -> HttpResponse {
    HttpResponse::Accepted().insert_header(("Location", format!("/api/v1/jobs/{}", job.id))).json(job)
}

/// A job: status, attempts, progress, result or last error.
#[utoipa::path(tag = "operator", params(("id" = String, Path, description = "Job id")), responses(
    (status = 200, body = Job), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/jobs/{id}")]
async fn get_job(
    req: actix_web::HttpRequest,
    _op: OperatorToken,
    id: web::Path<String>,
) -> Result<web::Json<Job>, ApiError> {
    Ok(web::Json(state(&req).tenancy().jobs().get(&id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// How many (1–100, default 20), newest first.
    limit: Option<i64>,
}

/// The newest jobs.
#[utoipa::path(tag = "operator", params(ListParams), responses(
    (status = 200, body = Vec<Job>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/jobs")]
async fn list_jobs(
    req: actix_web::HttpRequest,
    _op: OperatorToken,
    params: Params<ListParams>,
) -> Result<web::Json<Vec<Job>>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| JobStatus::try_from(s.to_owned()))
        .transpose()
        .map_err(|e| ApiError(Failure::invalid(e.to_string()).on_field("status")))?;
    Ok(web::Json(state(&req).tenancy().jobs().list(status, limit(params.limit)).await?))
}
