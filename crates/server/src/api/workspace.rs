//! The workspace API: projects, tasks and search of one workspace, for its members' personal
//! tokens. A token of another workspace (or an operator token) gets 404: the API never says
//! whether a workspace it cannot enter exists.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use silo_workspace::projects::{self, Project};
use silo_workspace::tasks::{self, MATCH_END, MATCH_START, NewTask, SearchHit, Task, TaskFilter, TaskPatch};
use utoipa::{IntoParams, ToSchema};

use super::Tagged;
use super::auth::Bearer;
use super::{Body, NoParams, Params};
use super::{ErrorBody, cursor, limit};
use crate::error::{ApiError, Failure};
use crate::request::state;
use crate::tenant::{Entered, admit};

/// Registers the routes in one `/w/{slug}` scope, so the slug pattern is matched once per
/// request rather than once per route tried.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(
        utoipa_actix_web::scope("/w/{slug}")
            .service(list_tasks)
            .service(get_task)
            .service(create_task)
            .service(update_task)
            .service(delete_task)
            .service(list_projects)
            .service(create_project)
            .service(search_tasks)
            .service(super::people::list_comments)
            .service(super::people::create_comment)
            .service(super::people::list_members)
            .service(super::people::change_role)
            .service(super::people::remove_member)
            // A nested scope falls back to the application's default (the HTML page), not
            // the API's: it answers its own unknown paths and methods.
            .default_service(actix_web::web::to(super::unrouted)),
    );
}

/// Enters the workspace of the path as the token's account, if the token is for it. A `GET`
/// whose `If-None-Match` names the current validator is answered 304 here, without opening the
/// tenant's file (after the rate check and metering, like any request).
pub(super) async fn entered(req: &HttpRequest, bearer: &Bearer, slug: &str) -> Result<Entered, ApiError> {
    let principal = &bearer.0;
    let accounts = state(req).accounts();
    let admitted = admit(accounts, slug, &principal.user_id).await?;
    if principal.tenant != Some(admitted.tenant.id) {
        return Err(ApiError(Failure::not_found()));
    }
    let billing = &state(req).billing;
    billing.limits().admit_api_request(&admitted.tenant)?;
    billing.metering().record(admitted.tenant.id, &principal.user_id);
    let etag = (req.method() == actix_web::http::Method::GET).then(|| admitted.etag(accounts));
    if let Some(etag) = &etag
        && crate::error::matches_if_none_match(req, etag)
    {
        return Err(ApiError(Failure::not_modified(etag.clone())));
    }
    let mut ws = admitted.open(accounts).await?;
    ws.set_etag(etag);
    Ok(ws)
}

/// A page of projects.
#[derive(Serialize, ToSchema)]
pub struct ProjectPage {
    /// Newest first.
    pub items: Vec<Project>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A page of tasks.
#[derive(Serialize, ToSchema)]
pub struct TaskPage {
    /// Newest first.
    pub items: Vec<Task>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Search results, best first; snippets mark matches with `[`…`]`.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// The hits.
    pub items: Vec<SearchHit>,
}

/// A page's size and where it starts (every paged list of the workspace API).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParams {
    /// Page size (1–100, default 20).
    pub(super) limit: Option<i64>,
    /// From the previous page's `next_cursor` (digits).
    #[param(pattern = "^[0-9]{0,18}$")]
    pub(super) cursor: Option<String>,
}

/// Fetches `limit + 1` rows to know whether another page exists.
pub(super) fn paged<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| id(r).to_string()) } else { None };
    (rows, next)
}

/// Lists the workspace's projects.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), PageParams), responses(
    (status = 200, body = ProjectPage), (status = 304, description = "Not modified (If-None-Match)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 410, body = ErrorBody), (status = 423, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[get("/projects")]
async fn list_projects(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    params: Params<PageParams>,
) -> Result<Tagged<web::Json<ProjectPage>>, ApiError> {
    let ws = entered(&req, &bearer, &slug).await?;
    let limit = limit(params.limit);
    let rows = projects::list(ws.turn(), cursor(params.cursor.as_deref())?, limit + 1)?;
    let (items, next_cursor) = paged(rows, limit, |p| p.id);
    Ok(Tagged(web::Json(ProjectPage { items, next_cursor }), ws.leave().etag))
}

/// A project to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Name (1–200 characters, not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Description (up to 5,000 characters).
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
}

/// Creates a project.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path)), request_body = NewProject, responses(
    (status = 201, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
#[post("/projects")]
async fn create_project(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    _params: Params<NoParams>,
    body: Body<NewProject>,
) -> Result<HttpResponse, ApiError> {
    let ws = entered(&req, &bearer, &slug).await?;
    let id = state(&req).billing.limits().create_project(
        &ws.tenant,
        ws.turn(),
        &body.name,
        &body.description,
        ws.member_id()?,
    )?;
    let project = projects::get(ws.turn(), id)?.ok_or_else(|| ApiError(Failure::not_found()))?;
    Ok(HttpResponse::Created().json(project))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TaskParams {
    /// Only this project's tasks.
    project: Option<i64>,
    /// Only `todo`, `doing` or `done`.
    #[param(value_type = Option<silo_workspace::tasks::TaskStatus>)]
    status: Option<String>,
    /// Page size (1–100, default 20).
    limit: Option<i64>,
    /// From the previous page's `next_cursor` (digits).
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
}

/// Lists tasks, newest first.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), TaskParams), responses(
    (status = 200, body = TaskPage), (status = 304, description = "Not modified (If-None-Match)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 410, body = ErrorBody), (status = 422, body = ErrorBody), (status = 423, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[get("/tasks")]
async fn list_tasks(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    params: Params<TaskParams>,
) -> Result<Tagged<web::Json<TaskPage>>, ApiError> {
    // An unknown status is refused (naming the field), not an empty page — before entering.
    if let Some(status) = params.status.as_deref() {
        status.parse::<silo_workspace::tasks::TaskStatus>()?;
    }
    let ws = entered(&req, &bearer, &slug).await?;
    let limit = limit(params.limit);
    let filter = TaskFilter {
        project: params.project,
        status: params.status.clone(),
        assignee: None,
        before: cursor(params.cursor.as_deref())?,
        ..TaskFilter::default()
    };
    let (items, next_cursor) = paged(tasks::list(ws.turn(), &filter, limit + 1)?, limit, |t| t.id);
    Ok(Tagged(web::Json(TaskPage { items, next_cursor }), ws.leave().etag))
}

/// Creates a task.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path)), request_body = NewTask, responses(
    (status = 201, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
#[post("/tasks")]
async fn create_task(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    _params: Params<NoParams>,
    body: Body<NewTask>,
) -> Result<HttpResponse, ApiError> {
    let ws = entered(&req, &bearer, &slug).await?;
    let id = tasks::create(ws.turn(), &body, ws.member_id()?)?;
    let task = tasks::get(ws.turn(), id)?.ok_or_else(|| ApiError(Failure::not_found()))?;
    Ok(HttpResponse::Created().json(task))
}

/// One task.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("id" = i64, Path)), responses(
    (status = 200, body = Task), (status = 304, description = "Not modified (If-None-Match)"), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/tasks/{id}")]
async fn get_task(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, i64)>,
) -> Result<Tagged<web::Json<Task>>, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    let task = tasks::get(ws.turn(), path.1)?.ok_or_else(|| ApiError(Failure::not_found()))?;
    Ok(Tagged(web::Json(task), ws.leave().etag))
}

/// Changes a task; absent fields stay, `null` clears `assignee_id` / `due_date`.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("id" = i64, Path)), request_body = TaskPatch, responses(
    (status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
#[patch("/tasks/{id}")]
async fn update_task(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, i64)>,
    _params: Params<NoParams>,
    body: Body<TaskPatch>,
) -> Result<web::Json<Task>, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    Ok(web::Json(
        tasks::update(ws.turn(), path.1, &body, ws.member_id()?)?
            .ok_or_else(|| ApiError(Failure::not_found()))?,
    ))
}

/// Deletes a task and its comments.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("id" = i64, Path)), responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/tasks/{id}")]
async fn delete_task(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, i64)>,
    _params: Params<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    if tasks::delete(ws.turn(), path.1, ws.member_id()?)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError(Failure::not_found()))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// Words to find (all of them, stemmed).
    q: String,
    /// Results (1–100, default 20).
    limit: Option<i64>,
}

/// Full-text search over tasks and comments, best first.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), SearchParams), responses(
    (status = 200, body = SearchResults), (status = 304, description = "Not modified (If-None-Match)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/search")]
async fn search_tasks(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    params: Params<SearchParams>,
) -> Result<Tagged<web::Json<SearchResults>>, ApiError> {
    let ws = entered(&req, &bearer, &slug).await?;
    let items = tasks::search(ws.turn(), &params.q, limit(params.limit))
        .await?
        .into_iter()
        .map(|hit| SearchHit {
            snippet: hit.snippet.replace(MATCH_START, "[").replace(MATCH_END, "]"),
            ..hit
        })
        .collect();
    Ok(Tagged(web::Json(SearchResults { items }), ws.leave().etag))
}
