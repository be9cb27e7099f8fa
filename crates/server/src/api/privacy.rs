//! Privacy over the operator API: the personal-data manifests (what each column of
//! `control.db` and of every tenant file holds about a person, and what erasing that person
//! does with it), and data-subject requests — export and erasure of one person, as jobs.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use silo_tenancy::privacy::Manifest;
use utoipa::ToSchema;

use super::ErrorBody;
use super::auth::OperatorToken;
use super::jobs::accepted;
use super::{Body, NoParams, Params};
use crate::error::ApiError;
use crate::request::state;
use silo_jobs::Job;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(manifest).service(export_subject).service(erase_subject);
}

/// Both manifests, table by table and column by column.
#[derive(Serialize, ToSchema)]
pub struct Manifests {
    /// `control.db`: accounts, sessions, tokens, memberships, the outbox, the audit log, jobs…
    #[schema(value_type = Object)]
    pub control: Manifest,
    /// Every tenant file: members, projects, tasks, comments, activity, the search index.
    #[schema(value_type = Object)]
    pub tenant: Manifest,
}

/// The personal-data manifests (`action`: delete, anonymise, unlink or keep, per column).
#[utoipa::path(tag = "operator", responses(
    (status = 200, body = Manifests), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/privacy/manifest")]
async fn manifest(_op: OperatorToken) -> Result<web::Json<Manifests>, ApiError> {
    Ok(web::Json(Manifests { control: Manifest::control(), tenant: silo_workspace::personal_data() }))
}

/// Whose data.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The person's email address.
    pub email: String,
}

/// Starts an export of everything Silo holds about one person (Art. 15/20): their account,
/// memberships, sessions, tokens, emails and audit entries, and their rows in every tenant they
/// belong to. 202 with the job whatever the address (an unknown one ends `done` with
/// `found: false`); once done, `result.download` is the zip's link.
#[utoipa::path(tag = "operator", request_body = Subject, responses(
    (status = 202, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[post("/subjects/export")]
async fn export_subject(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    _params: Params<NoParams>,
    body: Body<Subject>,
) -> Result<HttpResponse, ApiError> {
    let started = state(&req).accounts().subjects().start_export(&body.email, op.0.email.as_str()).await?;
    Ok(accepted(started.job().clone()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EraseParams {
    /// `true`: answer what would be deleted or anonymised, per tenant and per control-plane
    /// table, and change nothing (`dry-run`, the CLI's spelling, is the same).
    #[serde(alias = "dry-run")]
    dry_run: Option<bool>,
}

/// Erases one person (Art. 17) in every tenant they belong to and in the control plane, as
/// the manifests say, and records them (by keyed hash) in the erasure ledger that every
/// restore replays. 202 with the job whatever the address (an unknown one ends `done` with
/// `found: false`; a repeat, `already_erased`). With `?dry_run=true`: 200 and the counts.
#[utoipa::path(tag = "operator", request_body = Subject, params(EraseParams), responses(
    (status = 200, description = "Dry run: what would be erased", body = Object), (status = 202, body = Job),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[post("/subjects/erase")]
async fn erase_subject(
    req: actix_web::HttpRequest,
    op: OperatorToken,
    params: Params<EraseParams>,
    body: Body<Subject>,
) -> Result<HttpResponse, ApiError> {
    let subjects = state(&req).accounts().subjects();
    if params.dry_run.unwrap_or(false) {
        return Ok(HttpResponse::Ok().json(subjects.plan_erasure(&body.email).await?));
    }
    Ok(accepted(subjects.start_erasure(&body.email, op.0.email.as_str()).await?))
}
