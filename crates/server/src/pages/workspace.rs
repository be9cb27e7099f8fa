//! A tenant's workspace under `/w/{slug}/`: dashboard, projects, tasks, comments, search,
//! members and invitations, settings. Every handler enters the workspace through
//! [`crate::tenant::enter`] and reads only the entered tenant's own file.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, get, post, web};
use serde::Deserialize;
use silo_accounts::Role;
use silo_jobs::Enqueued;
use silo_tenancy::jobs::TENANT_EXPORT;
use silo_workspace::tasks::{MATCH_END, MATCH_START, NewTask, STATUSES, TaskFilter, TaskOrder, TaskPatch};
use silo_workspace::{activity, comments, members, projects, tasks};

use super::account::NoFields;
use super::{FormBack, Page, PageResult, flash_outcome, flash_outcome_with, form_outcome, page_offset};
use crate::csrf::CsrfForm;
use crate::error::{Failure, PageError, matches_if_none_match};
use crate::redirects::{see_other_with_flash, see_other_with_form_error, take_flash};
use crate::request::state;
use crate::sessions::SignedIn;
use crate::tenant::{Entered, Workspace, admit, enter};

const PER_PAGE: i64 = 25;

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/w/{slug}")
            .service(dashboard_page)
            .service(create_project)
            .service(project_page)
            .service(delete_project)
            .service(create_task)
            .service(task_page)
            .service(update_task)
            .service(move_task)
            .service(add_comment)
            .service(delete_task)
            .service(search_page)
            .service(member_list)
            .service(invite_page)
            .service(change_role)
            .service(remove_member)
            .service(revoke_invitation)
            .service(settings_page)
            .service(change_plan)
            .service(plan_again)
            .service(export_workspace)
            .service(rename_page)
            .service(delete_workspace)
            .configure(super::billing::workspace_routes)
            .default_service(web::to(super::not_found)),
    );
}

pub(super) async fn entered(req: &HttpRequest, me: &SignedIn) -> Result<Entered, PageError> {
    let slug = req.match_info().get("slug").unwrap_or_default();
    let ws = match enter(state(req).accounts(), slug, &me.session.user_id).await {
        Ok(ws) => ws,
        Err(failure) => return Err(explained(req, me, failure).await.into()),
    };
    state(req).billing.metering().record(ws.tenant.id, &me.session.user_id);
    Ok(ws)
}

/// Enters the workspace for a page built from the tenant's file alone (and the tenant, the
/// member and the session): the page gets a validator, and a browser whose copy is current
/// (`If-None-Match`) gets 304 without the file being opened. Not while a flash message waits
/// to be shown: that page is rendered and not kept.
async fn entered_for_read(req: &HttpRequest, me: &SignedIn) -> Result<Entered, PageError> {
    let slug = req.match_info().get("slug").unwrap_or_default();
    let accounts = state(req).accounts();
    let admitted = match admit(accounts, slug, &me.session.user_id).await {
        Ok(admitted) => admitted,
        Err(failure) => return Err(explained(req, me, failure).await.into()),
    };
    state(req).billing.metering().record(admitted.tenant.id, &me.session.user_id);
    let etag = if take_flash(req).is_none() {
        let operator = accounts.users().is_operator(&me.session.user_id).await?;
        Some(page_etag(&admitted.etag(accounts), &me.session, operator))
    } else {
        None
    };
    if let Some(etag) = &etag
        && matches_if_none_match(req, etag)
    {
        return Err(Failure::not_modified(etag.clone()).into());
    }
    let mut ws = admitted.open(accounts).await?;
    ws.set_etag(etag);
    Ok(ws)
}

/// A refusal to enter a workspace, explained where it is the workspace's state: a suspended
/// one tells its member why (an unpaid invoice, or the operators) instead of a bare 423, and
/// shows an owner of an unpaid one the way to the invoice and how to pay it.
async fn explained(req: &HttpRequest, me: &SignedIn, failure: Failure) -> Failure {
    if failure.status != StatusCode::LOCKED {
        return failure;
    }
    let slug = req.match_info().get("slug").unwrap_or_default();
    match suspension(req, me, slug).await {
        Ok(explained) => explained,
        // Should the explanation fail to load, the refusal still stands, in its short words.
        Err(_) => failure,
    }
}

async fn suspension(req: &HttpRequest, me: &SignedIn, slug: &str) -> Result<Failure, PageError> {
    let app = state(req);
    let slug: silo_core::TenantSlug = slug.parse().map_err(|_| Failure::not_found())?;
    let tenant = app.tenancy().resolve(&slug).await?;
    let role = app.accounts().memberships().role(tenant.id, &me.session.user_id).await?;
    let owner = role == Some(Role::Owner);
    let unpaid = app.billing.dunning().suspended_over(tenant.id).await?;
    let locked = |message: String| Failure::new(StatusCode::LOCKED, "suspended", message);
    Ok(match (unpaid, owner) {
        (Some(invoice), true) => locked(format!(
            "{} is suspended because invoice {} ({}) is unpaid. It reopens as soon as the payment \
             is recorded; nothing in it is lost.",
            tenant.name,
            invoice.number.map_or_else(|| invoice.id.clone(), |n| n.to_string()),
            silo_billing::invoices::money(invoice.total, &invoice.currency),
        ))
        .with_link(format!("/w/{slug}/billing/invoices/{}", invoice.id), "See the invoice and how to pay it"),
        (Some(_), false) => locked(format!(
            "{} is suspended because an invoice is unpaid. Its owners have been told; until it is \
             paid nothing here can be read or changed, and nothing in it is lost.",
            tenant.name
        )),
        (None, true) => locked(format!(
            "{} was suspended by the operators of this Silo. Ask them why; nothing in it is lost. \
             Its billing stays open to you.",
            tenant.name
        ))
        .with_link(format!("/w/{slug}/billing"), "Open billing"),
        (None, false) => locked(format!(
            "{} was suspended by the operators of this Silo. Its owners can find out why; nothing \
             in it is lost.",
            tenant.name
        )),
    })
}

/// A page's validator: the file's (data version, tenant, member) and what every page shows of
/// the session — the account's name and email, whether it operates the console, the form
/// token.
fn page_etag(file: &str, session: &silo_accounts::sessions::Session, operator: bool) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (file, &session.display_name, &session.email, operator, &session.csrf_token).hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// A workspace page with the workspace's header.
pub(super) fn page(template: &'static str, ws: &Workspace, tab: &str) -> Page {
    let can_manage = ws.require(Role::Admin).is_ok();
    Page::new(template).validated_by(ws.etag.clone()).with(
        "ws",
        &serde_json::json!({
            "slug": ws.tenant.slug, "name": ws.tenant.name, "role": ws.role, "tab": tab,
            "can_manage": can_manage, "is_owner": ws.role == Role::Owner,
        }),
    )
}

pub(super) fn home(ws: &Workspace) -> String {
    format!("/w/{}/", ws.tenant.slug)
}

#[derive(Deserialize)]
struct Before {
    before: Option<i64>,
}

#[get("/")]
async fn dashboard_page(req: HttpRequest, me: SignedIn, query: web::Query<Before>) -> PageResult {
    let ws = entered_for_read(&req, &me).await?;
    let projects = projects::list(ws.turn(), query.before, PER_PAGE + 1)?;
    let (projects, more) = split_page(projects, PER_PAGE);
    let activity: Vec<serde_json::Value> = activity::recent(ws.turn(), 10)?
        .into_iter()
        .map(|a| {
            let (action, object, quote) = a.sentence();
            let link = (a.subject_kind == "task" && a.subject_exists).then_some(a.subject_id).flatten();
            serde_json::json!({ "at": a.at, "actor": a.actor, "action": action, "object": object, "quote": quote, "task": link })
        })
        .collect();
    let ws = ws.leave();
    page("workspace/dashboard.html", &ws, "projects")
        .with("next_before", &more.then(|| projects.last().map(|p| p.id)).flatten())
        .with("projects", &projects)
        .with("activity", &activity)
        .render(&req)
        .await
}

/// Takes `per_page` of `rows` (fetched one extra) and says whether there is another page.
fn split_page<T>(mut rows: Vec<T>, per_page: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > per_page;
    rows.truncate(per_page as usize);
    (rows, more)
}

#[derive(Deserialize)]
struct ProjectForm {
    name: String,
    #[serde(default)]
    description: String,
}

#[post("/projects")]
async fn create_project(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<ProjectForm>) -> PageResult {
    let ws = entered(&req, &me).await?;
    let creator = ws.member_id()?;
    let created = state(&req).billing.limits().create_project(
        &ws.tenant,
        ws.turn(),
        &form.name,
        &form.description,
        creator,
    );
    let ws = ws.leave();
    let back = home(&ws);
    let form_back = FormBack {
        back: &back,
        fields: &["name", "description"],
        typed: vec![("name", &form.name), ("description", &form.description)],
    };
    form_outcome(form_back, created, |id| {
        Ok(see_other_with_flash(&format!("{back}projects/{id}"), "ok", "Project created."))
    })
}

/// Deletes a project with its tasks and comments (admins and owners; asked first on its page).
#[post("/projects/{id}/delete")]
async fn delete_project(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    ws.require(Role::Admin)?;
    let deleted = projects::delete(ws.turn(), path.1, ws.member_id()?);
    let ws = ws.leave();
    flash_outcome_with(&home(&ws), deleted, |deleted| match deleted {
        Some((name, tasks)) => Ok(see_other_with_flash(
            &home(&ws),
            "ok",
            &format!("Deleted the project {name} and its {tasks} task{}.", if tasks == 1 { "" } else { "s" }),
        )),
        None => Err(Failure::not_found().into()),
    })
}

#[derive(Deserialize, Default)]
struct TaskListQuery {
    status: Option<String>,
    assignee: Option<String>,
    before: Option<i64>,
    /// `newest` (the default), `due` or `updated`.
    sort: Option<String>,
    /// The page of an order other than newest first.
    page: Option<i64>,
}

#[get("/projects/{id}")]
async fn project_page(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    query: web::Query<TaskListQuery>,
) -> PageResult {
    let ws = entered_for_read(&req, &me).await?;
    let project = projects::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    let status = query.status.clone().filter(|s| STATUSES.contains(&s.as_str()));
    let assignee = query.assignee.as_deref().and_then(|a| a.parse().ok());
    let order = query.sort.as_deref().and_then(TaskOrder::parse).unwrap_or_default();
    let (page_number, skip) = page_offset(query.page, 3 * PER_PAGE);
    let filter = TaskFilter {
        project: Some(project.id),
        status: status.clone(),
        assignee,
        before: query.before,
        order,
        skip,
    };
    let (list, more) = split_page(tasks::list(ws.turn(), &filter, 3 * PER_PAGE + 1)?, 3 * PER_PAGE);
    let members = members::list(ws.turn(), None, 100)?;
    let mine = members.iter().find(|m| m.user_id == me.session.user_id).map(|m| m.id);
    let ws = ws.leave();
    // Overdue: due before today (UTC) and not done.
    let today = state(&req).accounts().now().date().to_owned();
    let card = |t: &tasks::Task| {
        let overdue =
            t.status.as_str() != "done" && t.due_date.as_deref().is_some_and(|d| d < today.as_str());
        serde_json::json!({ "task": t, "overdue": overdue })
    };
    let columns: Vec<serde_json::Value> = STATUSES
        .iter()
        .filter(|s| status.as_deref().is_none_or(|only| only == **s))
        .map(|s| serde_json::json!({ "status": s, "tasks": list.iter().filter(|t| t.status.as_str() == *s).map(card).collect::<Vec<_>>() }))
        .collect();
    page("workspace/project.html", &ws, "projects")
        .with("project", &project)
        .with("columns", &columns)
        .with("empty", &list.is_empty())
        .with("statuses", &STATUSES)
        .with("filter", &serde_json::json!({ "status": status, "assignee": assignee, "sort": order.name() }))
        .with("sorts", &TaskOrder::ALL.map(|(_, name)| name))
        .with("view", &board_view(&query).trim_start_matches('?'))
        .with("mine", &mine)
        .with("members", &members)
        .with(
            "next_before",
            &more.then(|| list.last().map(|t| t.id)).flatten().filter(|_| order == TaskOrder::Newest),
        )
        .with("next_page", &(more && order != TaskOrder::Newest).then_some(page_number + 1))
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct TaskForm {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    assignee_id: Option<String>,
    #[serde(default)]
    due_date: Option<String>,
}

impl TaskForm {
    /// The task form's page: errors next to these fields, what was typed put back.
    fn back<'a>(&'a self, back: &'a str) -> FormBack<'a> {
        let optional = |value: &'a Option<String>| value.as_deref().unwrap_or_default();
        FormBack {
            back,
            fields: &["title", "body", "status", "assignee_id", "due_date"],
            typed: vec![
                ("title", &self.title),
                ("body", &self.body),
                ("status", optional(&self.status)),
                ("assignee_id", optional(&self.assignee_id)),
                ("due_date", optional(&self.due_date)),
            ],
        }
    }
}

/// An empty select or date field means "none".
fn optional_id(value: &Option<String>) -> Result<Option<i64>, Failure> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Failure::invalid("That member does not exist.")),
    }
}

#[post("/projects/{id}/tasks")]
async fn create_task(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(form): CsrfForm<TaskForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    let project = projects::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    let back = format!("{}projects/{}", home(&ws), project.id);
    let new = NewTask {
        project_id: project.id,
        title: form.title.clone(),
        body: form.body.clone(),
        status: form.status.clone().filter(|s| !s.is_empty()),
        assignee_id: optional_id(&form.assignee_id)?,
        due_date: form.due_date.clone(),
    };
    let created = tasks::create(ws.turn(), &new, ws.member_id()?);
    drop(ws);
    form_outcome(form.back(&back), created, |_| Ok(see_other_with_flash(&back, "ok", "Task created.")))
}

#[derive(Deserialize)]
struct After {
    after: Option<i64>,
}

#[get("/tasks/{id}")]
async fn task_page(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    query: web::Query<After>,
) -> PageResult {
    let ws = entered_for_read(&req, &me).await?;
    let task = tasks::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    let project = projects::get(ws.turn(), task.project_id)?.ok_or_else(Failure::not_found)?;
    let (comments, more) =
        split_page(comments::list(ws.turn(), task.id, query.after, PER_PAGE + 1)?, PER_PAGE);
    let members = members::list(ws.turn(), None, 100)?;
    let ws = ws.leave();
    // An assignee the list does not hold (someone who left) stays selected, so saving the
    // form does not unassign them by accident.
    let other_assignee = task.assignee_id.filter(|id| !members.iter().any(|m| m.id == *id));
    page("workspace/task.html", &ws, "projects")
        .with("task", &task)
        .with("project", &project)
        .with("next_after", &more.then(|| comments.last().map(|c| c.id)).flatten())
        .with("comments", &comments)
        .with("statuses", &STATUSES)
        .with("members", &members)
        .with("other_assignee", &other_assignee)
        .render(&req)
        .await
}

#[post("/tasks/{id}")]
async fn update_task(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(form): CsrfForm<TaskForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    let back = format!("{}tasks/{}", home(&ws), path.1);
    let patch = TaskPatch {
        title: Some(form.title.clone()),
        body: Some(form.body.clone()),
        status: form.status.clone().filter(|s| !s.is_empty()),
        assignee_id: Some(optional_id(&form.assignee_id)?),
        due_date: Some(form.due_date.clone().filter(|d| !d.trim().is_empty())),
    };
    let saved = tasks::update(ws.turn(), path.1, &patch, ws.member_id()?);
    drop(ws);
    form_outcome(form.back(&back), saved, |saved| match saved {
        Some(_) => Ok(see_other_with_flash(&back, "ok", "Task saved.")),
        None => Err(Failure::not_found().into()),
    })
}

#[derive(Deserialize)]
struct MoveForm {
    status: String,
    /// The board's filters and order when the card was moved (a query string).
    #[serde(default)]
    view: String,
}

/// A board's filters and order, as a query string (`?status=todo&sort=due`, or empty), from
/// what it was asked with: only values the board knows, so it can be put in a link as is.
fn board_view(query: &TaskListQuery) -> String {
    let status = query.status.as_deref().filter(|s| STATUSES.contains(s));
    let assignee = query.assignee.as_deref().and_then(|a| a.parse::<i64>().ok()).map(|a| a.to_string());
    let sort = query
        .sort
        .as_deref()
        .and_then(TaskOrder::parse)
        .filter(|o| *o != TaskOrder::Newest)
        .map(TaskOrder::name);
    let pairs: Vec<(&str, &str)> = [("status", status), ("assignee", assignee.as_deref()), ("sort", sort)]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
    }
}

/// A card's status changed from the board: back to the board, where it now stands.
#[post("/tasks/{id}/status")]
async fn move_task(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(form): CsrfForm<MoveForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    let task = tasks::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    // Back to the board as it was shown: its filters and order kept.
    let view = board_view(&serde_urlencoded::from_str(&form.view).unwrap_or_default());
    // …and to the card itself, where the page was scrolled to.
    let back = format!("{}projects/{}{view}#task-{}", home(&ws), task.project_id, task.id);
    let patch = TaskPatch { status: Some(form.status), ..TaskPatch::default() };
    let moved = tasks::update(ws.turn(), task.id, &patch, ws.member_id()?);
    drop(ws);
    flash_outcome_with(&back, moved, |moved| match moved {
        Some(t) => {
            Ok(see_other_with_flash(&back, "ok", &format!("“{}” is {} now.", t.title, t.status.as_str())))
        }
        None => Err(Failure::not_found().into()),
    })
}

#[derive(Deserialize)]
struct CommentForm {
    body: String,
}

#[post("/tasks/{id}/comments")]
async fn add_comment(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(form): CsrfForm<CommentForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    let task = tasks::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    let back = format!("{}tasks/{}", home(&ws), task.id);
    let added = comments::create(ws.turn(), task.id, ws.member_id()?, &form.body);
    drop(ws);
    // The page's task form has a `body` too: the comment's refusal and text go by `comment`.
    match added {
        Err(e) if e.kind() == silo_core::ErrorKind::Invalid => {
            let message = super::sentence(&e.to_string());
            Ok(see_other_with_form_error(&back, Some("comment"), &message, &[("comment", &form.body)]))
        }
        other => flash_outcome(&back, other, "Comment added."),
    }
}

#[post("/tasks/{id}/delete")]
async fn delete_task(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, i64)>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let ws = entered(&req, &me).await?;
    let task = tasks::get(ws.turn(), path.1)?.ok_or_else(Failure::not_found)?;
    tasks::delete(ws.turn(), task.id, ws.member_id()?)?;
    let ws = ws.leave();
    Ok(see_other_with_flash(&format!("{}projects/{}", home(&ws), task.project_id), "ok", "Task deleted."))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// HTML-escapes a snippet and turns its match markers into `<mark>`.
fn highlight(snippet: &str) -> String {
    let mut html = String::with_capacity(snippet.len() + 16);
    for c in snippet.chars() {
        match c {
            MATCH_START => html.push_str("<mark>"),
            MATCH_END => html.push_str("</mark>"),
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
    html
}

#[get("/search")]
async fn search_page(req: HttpRequest, me: SignedIn, query: web::Query<SearchQuery>) -> PageResult {
    let ws = entered_for_read(&req, &me).await?;
    let hits: Vec<serde_json::Value> = tasks::search(ws.turn(), &query.q, 50)
        .await?
        .into_iter()
        .map(|h| serde_json::json!({ "kind": h.kind, "task_id": h.task_id, "title": h.title, "snippet": highlight(&h.snippet) }))
        .collect();
    let ws = ws.leave();
    page("workspace/search.html", &ws, "search").with("q", &query.q).with("hits", &hits).render(&req).await
}

#[derive(Deserialize)]
struct MemberQuery {
    after: Option<i64>,
}

#[get("/members")]
async fn member_list(req: HttpRequest, me: SignedIn, query: web::Query<MemberQuery>) -> PageResult {
    let ws = entered(&req, &me).await?;
    let (list, more) = split_page(members::list(ws.turn(), query.after, PER_PAGE + 1)?, PER_PAGE);
    // Former members are shown on the first page only (their work keeps their name).
    let former = if query.after.is_none() { members::former(ws.turn(), PER_PAGE)? } else { Vec::new() };
    let ws = ws.leave();
    let invitations = if ws.require(Role::Admin).is_ok() {
        state(&req).accounts().invitations().pending(ws.tenant.id).await?
    } else {
        Vec::new()
    };
    // The last owner cannot leave (the workspace keeps one): not offered, and said why.
    let only_owner = ws.role == Role::Owner
        && state(&req).accounts().memberships().owner_emails(ws.tenant.id).await?.len() == 1;
    page("workspace/members.html", &ws, "members")
        .with("only_owner", &only_owner)
        .with("next_after", &more.then(|| list.last().map(|m| m.id)).flatten())
        .with("members", &list)
        .with("former", &former)
        .with("me_id", &me.session.user_id)
        .with("invitations", &invitations)
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
    role: String,
}

#[post("/members/invite")]
async fn invite_page(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<InviteForm>) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Admin)?;
    let accounts = state(&req).accounts();
    let back = format!("{}members", home(&ws));
    let inviter = accounts.users().by_id(&me.session.user_id).await?;
    let role: Role = match form.role.parse() {
        Ok(role) => role,
        Err(e) => return Ok(see_other_with_flash(&back, "error", &e.to_string())),
    };
    // Each invitation sends an email: a few an hour to one address, and a bounded number from
    // one workspace, so a workspace is no relay for mail to anyone.
    let workspace = ws.tenant.id.to_string();
    if let Err(wait) = state(&req).invite_throttle.attempt(&form.email, &workspace, false) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let message = format!(
            "Too many invitations from this workspace or to this address for now; try again in {minutes} minutes."
        );
        return Ok(see_other_with_flash(&back, "error", &message));
    }
    let links = &state(&req).links;
    let invited =
        state(&req).billing.limits().invite(&ws.tenant, &form.email, role, &inviter, links.origin()).await;
    if matches!(&invited, Err(e) if e.is_user_error()) {
        // Refused before any email: it does not count.
        state(&req).invite_throttle.refund(&form.email, &workspace);
    }
    let form_back = FormBack {
        back: &back,
        fields: &["email", "role"],
        typed: vec![("email", &form.email), ("role", &form.role)],
    };
    form_outcome(form_back, invited, |(invitation, secret)| {
        let link = links.main(&format!("/invitations/{secret}"));
        let message =
            format!("Invitation emailed to {}. You can also share this link: {link}", invitation.email);
        Ok(see_other_with_flash(&back, "ok", &message))
    })
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

#[post("/members/{user_id}/role")]
async fn change_role(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, String)>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Admin)?;
    let back = format!("{}members", home(&ws));
    let role: Role = match form.role.parse() {
        Ok(role) => role,
        Err(e) => return Ok(see_other_with_flash(&back, "error", &e.to_string())),
    };
    let memberships = state(&req).accounts().memberships();
    memberships.role(ws.tenant.id, &path.1).await?.ok_or_else(Failure::not_found)?;
    // The role rules (owners by owners only, the last owner kept) are the accounts crate's.
    flash_outcome(
        &back,
        memberships.change_role(&ws.tenant, &path.1, role, me.acting()).await,
        "Role changed.",
    )
}

#[post("/members/{user_id}/remove")]
async fn remove_member(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, String)>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    let leaving = path.1 == me.session.user_id;
    if !leaving {
        ws.require(Role::Admin)?;
    }
    let memberships = state(&req).accounts().memberships();
    memberships.role(ws.tenant.id, &path.1).await?.ok_or_else(Failure::not_found)?;
    let back = format!("{}members", home(&ws));
    flash_outcome_with(&back, memberships.remove(&ws.tenant, &path.1, me.acting()).await, |()| {
        Ok(match leaving {
            true => see_other_with_flash("/", "ok", "You left the workspace."),
            false => see_other_with_flash(&back, "ok", "Member removed."),
        })
    })
}

#[post("/invitations/{id}/revoke")]
async fn revoke_invitation(
    req: HttpRequest,
    me: SignedIn,
    path: web::Path<(String, String)>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Admin)?;
    if !state(&req).accounts().invitations().revoke(ws.tenant.id, &path.1).await? {
        return Err(Failure::not_found().into());
    }
    Ok(see_other_with_flash(&format!("{}members", home(&ws)), "ok", "Invitation withdrawn."))
}

#[get("/settings")]
async fn settings_page(req: HttpRequest, me: SignedIn) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    let tenancy = state(&req).tenancy();
    let grace_days = tenancy.settings().tenants.deletion_grace_days;
    let exports = match ws.role {
        Role::Owner => tenancy.jobs().of_tenant(TENANT_EXPORT, ws.tenant.id, 5).await?,
        _ => Vec::new(),
    };
    page("workspace/settings.html", &ws, "settings")
        .with("tenant", &ws.tenant)
        .with("grace_days", &grace_days)
        .with("exports", &exports)
        .render(&req)
        .await
}

#[derive(Deserialize)]
struct PlanForm {
    plan: String,
    /// Set by the confirmation step; without it, the change is shown first with its cost.
    #[serde(default)]
    confirm: String,
}

/// The address the plan form posts to, opened again (a reload of the confirmation): billing.
#[get("/plan")]
async fn plan_again(req: HttpRequest) -> PageResult {
    let slug = req.match_info().get("slug").unwrap_or_default();
    Ok(crate::redirects::see_other(&format!("/w/{}/billing", crate::redirects::urlencode(slug))))
}

/// An owner moves the workspace to another plan (from the billing page): first what it costs
/// this month, then, confirmed, the change.
#[post("/plan")]
async fn change_plan(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<PlanForm>) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Owner)?;
    let back = format!("{}billing", home(&ws));
    let billing = &state(&req).billing;
    if form.confirm != "yes" {
        let preview = billing.subscriptions().preview(&ws.tenant, form.plan.trim()).await;
        return match preview {
            Ok(preview) => {
                let terms = billing.plans().get(&preview.to)?.clone();
                page("workspace/plan_confirm.html", &ws, "billing")
                    .with("preview", &preview)
                    .with("limits", &terms.limits_text())
                    .with("price", &terms.price_text())
                    .render(&req)
                    .await
            }
            Err(e) => flash_outcome(&back, Err::<(), _>(e), ""),
        };
    }
    let actor = me.session.email.as_str();
    let changed = state(&req)
        .billing
        .subscriptions()
        .choose(&silo_core::TenantRef::Id(ws.tenant.id), form.plan.trim(), actor)
        .await;
    flash_outcome_with(&back, changed, |tenant| {
        Ok(see_other_with_flash(&back, "ok", &format!("This workspace is now on the {} plan.", tenant.plan)))
    })
}

/// Starts an export of the workspace (owners): a job; the settings page shows it and, once
/// ready, its download link (valid for 7 days).
#[post("/export")]
async fn export_workspace(req: HttpRequest, me: SignedIn, _form: CsrfForm<NoFields>) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Owner)?;
    let back = format!("{}settings", home(&ws));
    let started = state(&req).tenancy().exports().start(ws.tenant.id, &me.session.email).await;
    flash_outcome_with(&back, started, |started| {
        let message = match started {
            Enqueued::New(_) => "Export started: its download link appears below when it is ready.",
            Enqueued::InProgress(_) => {
                "An export is already being made: its download link appears below when it is ready."
            }
        };
        Ok(see_other_with_flash(&back, "ok", message))
    })
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

#[post("/settings")]
async fn rename_page(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<RenameForm>) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Admin)?;
    let back = format!("{}settings", home(&ws));
    flash_outcome(
        &back,
        state(&req).tenancy().tenants().rename(ws.tenant.id, &form.name, &me.session.email).await,
        "Workspace renamed.",
    )
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

/// Deletes the workspace (soft: closed at once, files purged later by an operator). The owner
/// types the slug to confirm.
#[post("/delete")]
async fn delete_workspace(
    req: HttpRequest,
    me: SignedIn,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let ws = entered(&req, &me).await?.leave();
    ws.require(Role::Owner)?;
    if ws.tenant.slug != form.confirm.trim() {
        let back = format!("{}settings", home(&ws));
        return Ok(see_other_with_flash(
            &back,
            "error",
            "Type the workspace's address exactly to delete it.",
        ));
    }
    let id = silo_core::TenantRef::Id(ws.tenant.id);
    drop(ws);
    state(&req).tenancy().tenants().delete_by_owner(&id, &me.session.email).await?;
    let grace_days = state(&req).tenancy().settings().tenants.deletion_grace_days;
    let message = format!("The workspace is deleted. You can undo this here for {grace_days} days.");
    Ok(see_other_with_flash("/", "ok", &message))
}
