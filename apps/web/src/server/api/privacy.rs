//! The personal-data manifests over the operator API: what each column of `control.db` and of
//! every tenant file holds about a person, and what erasing that person does with it.

use actix_web::{get, web};
use serde::Serialize;
use silo_tenancy::privacy::Manifest;
use utoipa::ToSchema;

use super::ErrorBody;
use super::auth::OperatorToken;
use crate::server::error::ApiError;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(manifest);
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
