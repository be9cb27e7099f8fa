//! Server-rendered HTML pages (tera). Forms work without JavaScript; every state-changing form
//! posts through [`super::auth::CsrfForm`].
//!
//! - [`account`]: home, sign-up, sign-in/out, account settings, password reset, invitations.
//! - [`workspace`]: a tenant's workspace under `/w/{slug}/`.
//! - [`admin`]: the operators' console under `/admin`.

pub mod account;
pub mod admin;
pub mod workspace;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;

use super::auth::{csrf_token, current_session, flash_removal, state, take_flash};
use super::error::{Failure, PageError};
use super::templates::{STYLESHEET, TEMPLATES};

/// Registers every page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(stylesheet);
    account::routes(cfg);
    workspace::routes(cfg);
    admin::routes(cfg);
}

/// A page to render: a template and its context.
pub struct Page {
    template: &'static str,
    context: tera::Context,
    status: StatusCode,
}

impl Page {
    /// A page from a template.
    pub fn new(template: &'static str) -> Self {
        Self { template, context: tera::Context::new(), status: StatusCode::OK }
    }

    /// Adds a value to the template's context.
    pub fn with(mut self, key: &str, value: &impl Serialize) -> Self {
        self.context.insert(key, value);
        self
    }

    /// Renders with another status (a form shown again with its error: 422).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Renders it, with what every page shows: the signed-in account, the form token and the
    /// flash message (which is then cleared).
    pub async fn render(mut self, req: &HttpRequest) -> Result<HttpResponse, PageError> {
        let session = current_session(req).await?;
        if let Some(session) = &session {
            let operator = state(req).tenancy.is_operator(&session.user_id).await?;
            self.context.insert(
                "me",
                &serde_json::json!({ "name": session.display_name, "email": session.email, "operator": operator }),
            );
        }
        self.context.insert("csrf", &csrf_token(req).await?);
        let flash = take_flash(req);
        if let Some((kind, message)) = &flash {
            self.context.insert("flash", &serde_json::json!({ "kind": kind, "message": message }));
        }
        let html = TEMPLATES.render(self.template, &self.context).map_err(|e| {
            tracing::error!(template = self.template, error = ?e, "template failed");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side.")
        })?;
        let mut response = HttpResponse::build(self.status);
        response
            .content_type("text/html; charset=utf-8")
            .insert_header(CacheControl(vec![CacheDirective::NoStore]));
        if flash.is_some() {
            response.cookie(flash_removal());
        }
        Ok(response.body(html))
    }
}

/// The page a one-time link (`/invitations/{token}`, `/signup/confirm/{token}`) leads to:
/// what it is for under `key`, or 404 when it is unknown, used or expired; with `error`, the
/// form shown again (422).
pub fn link_page<T: Serialize>(
    template: &'static str,
    key: &str,
    found: &Option<T>,
    token: &str,
    error: Option<&str>,
) -> Page {
    let status = match (found, error) {
        (_, Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (Some(_), None) => StatusCode::OK,
        (None, None) => StatusCode::NOT_FOUND,
    };
    let page = Page::new(template).with(key, found).with("token", &token).status(status);
    match error {
        Some(error) => page.with("error", &error),
        None => page,
    }
}

/// The error page (404, 403, 410, 423, 429, 500, 503) in the site's style.
pub fn error_page(failure: &Failure) -> HttpResponse {
    let title = match failure.status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        410 => "Deleted",
        423 => "Suspended",
        429 => "Slow down",
        503 => "Unavailable",
        s if s >= 500 => "Something broke",
        _ => "That did not work",
    };
    let mut context = tera::Context::new();
    context.insert("status", &failure.status.as_u16());
    context.insert("title", title);
    context.insert("message", &failure.message);
    let html = TEMPLATES.render("error.html", &context).unwrap_or_else(|e| {
        tracing::error!(error = ?e, "error template failed");
        format!("<!doctype html><title>{title}</title><p>{}", failure.status)
    });
    HttpResponse::build(failure.status).content_type("text/html; charset=utf-8").body(html)
}

/// The default service: an unknown path is a 404 page.
pub async fn not_found() -> HttpResponse {
    error_page(&Failure::not_found())
}

#[get("/static/silo.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// Redirects to `back` after a form: with `ok` as the flash message on success, with the
/// error's message when the visitor caused it (bad input, wrong state); faults become error
/// pages.
pub fn flash_outcome<T>(
    back: &str,
    result: Result<T, silo_tenancy::Error>,
    ok: &str,
) -> Result<HttpResponse, PageError> {
    match result {
        Ok(_) => Ok(super::auth::see_other_with_flash(back, "ok", ok)),
        Err(e) if e.is_user_error() => Ok(super::auth::see_other_with_flash(back, "error", &e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// The page number and offset of a `?page=` parameter.
pub fn page_offset(page: Option<i64>, per_page: i64) -> (i64, i64) {
    let page = page.unwrap_or(1).max(1);
    (page, (page - 1) * per_page)
}
