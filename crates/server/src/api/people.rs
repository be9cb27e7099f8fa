//! The workspace API's people: comments on tasks, and the members (list, change a role,
//! remove one or leave) — with the pages' rules: anyone who belongs comments and leaves;
//! admins change roles and remove members, within the accounts' role rules (only owners make
//! or unmake owners, the last owner stays).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use silo_accounts::{By, Role};
use silo_workspace::comments::{self, Comment};
use silo_workspace::members::{self, Member};
use silo_workspace::tasks;
use utoipa::ToSchema;

use super::auth::Bearer;
use super::workspace::{PageParams, entered, paged};
use super::{Body, ErrorBody, NoParams, Params, Tagged, cursor, limit};
use crate::error::{ApiError, Failure};
use crate::request::state;

/// A page of comments, oldest first.
#[derive(Serialize, ToSchema)]
pub struct CommentPage {
    /// The comments.
    pub items: Vec<Comment>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// The comments of a task, oldest first.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("id" = i64, Path), PageParams), responses(
    (status = 200, body = CommentPage), (status = 304, description = "Not modified (If-None-Match)"), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/tasks/{id}/comments")]
pub(super) async fn list_comments(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, i64)>,
    params: Params<PageParams>,
) -> Result<Tagged<web::Json<CommentPage>>, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    tasks::get(ws.turn(), path.1)?.ok_or_else(|| ApiError(Failure::not_found()))?;
    let limit = limit(params.limit);
    let rows = comments::list(ws.turn(), path.1, cursor(params.cursor.as_deref())?, limit + 1)?;
    let (items, next_cursor) = paged(rows, limit, |c| c.id);
    Ok(Tagged(web::Json(CommentPage { items, next_cursor }), ws.leave().etag))
}

/// A comment to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// Text (1–10,000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    pub body: String,
}

/// Comments on a task, as the member whose token it is.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("id" = i64, Path)), request_body = NewComment, responses(
    (status = 201, body = Comment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/tasks/{id}/comments")]
pub(super) async fn create_comment(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, i64)>,
    _params: Params<NoParams>,
    body: Body<NewComment>,
) -> Result<HttpResponse, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    tasks::get(ws.turn(), path.1)?.ok_or_else(|| ApiError(Failure::not_found()))?;
    let id = comments::create(ws.turn(), path.1, ws.member_id()?, &body.body)?;
    let comment = comments::list(ws.turn(), path.1, Some(id - 1), 1)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError(Failure::not_found()))?;
    Ok(HttpResponse::Created().json(comment))
}

/// A page of the workspace's members.
#[derive(Serialize, ToSchema)]
pub struct MemberPage {
    /// The members who belong now.
    pub items: Vec<Member>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// The members who belong to the workspace now.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), PageParams), responses(
    (status = 200, body = MemberPage), (status = 304, description = "Not modified (If-None-Match)"), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/members")]
pub(super) async fn list_members(
    req: HttpRequest,
    bearer: Bearer,
    slug: web::Path<String>,
    params: Params<PageParams>,
) -> Result<Tagged<web::Json<MemberPage>>, ApiError> {
    let ws = entered(&req, &bearer, &slug).await?;
    let limit = limit(params.limit);
    let rows = members::list(ws.turn(), cursor(params.cursor.as_deref())?, limit + 1)?;
    let (items, next_cursor) = paged(rows, limit, |m| m.id);
    Ok(Tagged(web::Json(MemberPage { items, next_cursor }), ws.leave().etag))
}

/// A role to give.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// The new role.
    pub role: NewRole,
}

/// A member's role.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NewRole {
    /// Everything, including deleting the workspace.
    Owner,
    /// Manages members and settings.
    Admin,
    /// Works in the workspace.
    Member,
}

impl From<NewRole> for Role {
    fn from(role: NewRole) -> Self {
        match role {
            NewRole::Owner => Role::Owner,
            NewRole::Admin => Role::Admin,
            NewRole::Member => Role::Member,
        }
    }
}

/// Changes a member's role (admins; only owners make or unmake owners; the last owner stays).
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("user_id" = String, Path, description = "The member's account id")),
    request_body = RoleChange, responses(
    (status = 200, body = Member), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[patch("/members/{user_id}")]
pub(super) async fn change_role(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, String)>,
    _params: Params<NoParams>,
    body: Body<RoleChange>,
) -> Result<web::Json<Member>, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?;
    // The member's row as it is (read with the turn, which is given back before the control
    // plane is awaited); answered with its new role once the change is committed.
    let member = members::by_user(ws.turn(), &path.1)?.filter(|m| m.left_at.is_none());
    let ws = ws.leave();
    ws.require(Role::Admin)?;
    let member = member.ok_or_else(|| ApiError(Failure::not_found()))?;
    let role: Role = body.role.into();
    state(&req).accounts().memberships().change_role(&ws.tenant, &path.1, role, acting(&bearer)).await?;
    Ok(web::Json(Member { role: role.as_str().to_owned(), ..member }))
}

/// Removes a member (admins), or leaves (anyone, with their own account id). The last owner
/// stays.
#[utoipa::path(tag = "workspace", params(("slug" = String, Path), ("user_id" = String, Path, description = "The member's account id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[delete("/members/{user_id}")]
pub(super) async fn remove_member(
    req: HttpRequest,
    bearer: Bearer,
    path: web::Path<(String, String)>,
    _params: Params<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let ws = entered(&req, &bearer, &path.0).await?.leave();
    if path.1 != bearer.0.user_id.as_str() {
        ws.require(Role::Admin)?;
    }
    let memberships = state(&req).accounts().memberships();
    memberships.role(ws.tenant.id, &path.1).await?.ok_or_else(|| ApiError(Failure::not_found()))?;
    memberships.remove(&ws.tenant, &path.1, acting(&bearer)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The token's member, acting (the role rules apply from their stored role).
fn acting(bearer: &Bearer) -> By<'_> {
    By::Member { user_id: bearer.0.user_id.as_str(), label: bearer.0.email.as_str() }
}
