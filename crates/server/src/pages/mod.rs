//! Server-rendered HTML pages (tera). Forms work without JavaScript; every state-changing form
//! posts through [`super::csrf::CsrfForm`].
//!
//! - [`account`]: home, sign-up, sign-in/out, account settings, password reset, invitations.
//! - [`workspace`]: a tenant's workspace under `/w/{slug}/`.
//! - [`admin`]: the operators' console under `/admin`.
//! - [`billing`]: the workspace's billing page and invoices, the console's invoices.
//! - [`charts`]: server-rendered SVG charts (usage per day).

pub mod account;
pub mod admin;
pub mod billing;
pub mod charts;
pub mod workspace;

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use silo_core::ErrorKind;

use super::csrf::csrf_token;
use super::error::{DomainError, Failure, PRIVATE_PAGE, PageError, error_page_with};
use super::redirects::{
    Flash, flash_removal, see_other_with_flash, see_other_with_form_error, take_flash, take_typed,
    typed_removal,
};
use super::request::state;
use super::sessions::{current_session, session_secret};
use super::templates::{STYLESHEET, TEMPLATES};

/// Registers every page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(stylesheet);
    account::routes(cfg);
    workspace::routes(cfg);
    admin::routes(cfg);
    billing::admin_routes(cfg);
}

/// A page to render: a template and its context.
pub struct Page {
    template: &'static str,
    context: tera::Context,
    status: StatusCode,
    /// The validator of a page built from the tenant's file (see `workspace`): the page may be
    /// kept by the browser and revalidated instead of never stored.
    etag: Option<String>,
}

impl Page {
    /// A page from a template.
    pub fn new(template: &'static str) -> Self {
        Self { template, context: tera::Context::new(), status: StatusCode::OK, etag: None }
    }

    /// Sends `etag` with the page, which the browser then keeps for this account only and
    /// revalidates on every use (`private, no-cache`); without one, the page is never stored.
    pub fn validated_by(mut self, etag: Option<String>) -> Self {
        self.etag = etag;
        self
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
        signed_in_header(req, &mut self.context).await?;
        // A page rendered with its own flash (a form shown again with its error) keeps it.
        let flash = take_flash(req);
        if !self.context.contains_key("flash") {
            self.context.insert("flash", &flash);
        }
        let typed = take_typed(req);
        let had_typed = typed.is_some();
        self.context.insert("typed", &typed.unwrap_or_default());
        let html = TEMPLATES.render(self.template, &self.context).map_err(|e| {
            tracing::error!(template = self.template, error = ?e, "template failed");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side.")
        })?;
        let mut response = HttpResponse::build(self.status);
        response.content_type("text/html; charset=utf-8");
        match self.etag.filter(|_| flash.is_none()) {
            Some(etag) => {
                response
                    .insert_header((header::ETAG, etag))
                    .insert_header((header::CACHE_CONTROL, PRIVATE_PAGE));
            }
            None => {
                response.insert_header(CacheControl(vec![CacheDirective::NoStore]));
            }
        }
        if flash.is_some() {
            response.cookie(flash_removal());
        }
        if had_typed {
            response.cookie(typed_removal());
        }
        Ok(response.body(html))
    }
}

/// What the header of every page needs: the signed-in account (`me`), if any, and the form
/// token (`csrf`, for "Sign out").
async fn signed_in_header(req: &HttpRequest, context: &mut tera::Context) -> Result<(), Failure> {
    if let Some(session) = current_session(req).await? {
        let operator = state(req).accounts().users().is_operator(&session.user_id).await?;
        context.insert(
            "me",
            &serde_json::json!({ "name": session.display_name, "email": session.email, "operator": operator }),
        );
    }
    context.insert("csrf", &csrf_token(req).await?);
    Ok(())
}

/// Middleware: an error page answered to a signed-in browser is rendered again with the
/// signed-in header, so a 404 or 403 does not look like being signed out. `PageError`'s own
/// rendering cannot do it: it has no request and cannot wait for the session lookup.
pub async fn signed_in_errors(response: ServiceResponse) -> Result<ServiceResponse, actix_web::Error> {
    let Some(PageError(failure)) = response.response().error().and_then(|e| e.as_error::<PageError>()) else {
        return Ok(response);
    };
    if failure.status == StatusCode::NOT_MODIFIED || session_secret(response.request()).is_none() {
        return Ok(response);
    }
    let failure =
        Failure { message: failure.message.clone(), field: None, link: failure.link.clone(), ..*failure };
    let mut context = tera::Context::new();
    // Should the lookup itself fail (the control plane is what failed), the page stays as it
    // was: without the header.
    if signed_in_header(response.request(), &mut context).await.is_err() {
        return Ok(response);
    }
    let page = error_page_with(&failure, context);
    Ok(response.into_response(page))
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

/// The default service: an unknown path is a 404 page (with the signed-in header, through
/// [`signed_in_errors`]).
pub async fn not_found() -> Result<HttpResponse, PageError> {
    Err(Failure::not_found().into())
}

#[get("/static/silo.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// What a form handler answers.
pub type PageResult = Result<HttpResponse, PageError>;

/// The end of a form handler: back to `back` with `ok` flashed, or with the error's own words
/// when it is the user's doing (see [`flash_outcome_with`]).
pub fn flash_outcome<T, E: DomainError + Into<Failure>>(
    back: &str,
    result: Result<T, E>,
    ok: &str,
) -> PageResult {
    flash_outcome_with(back, result, |_| Ok(see_other_with_flash(back, "ok", ok)))
}

/// The end of a form handler: `done(value)` on success; on an error that is the user's doing
/// (bad input, wrong state), back to `back` with its words flashed, except a forbidden action,
/// which answers 403; any other error renders the error page.
pub fn flash_outcome_with<T, E: DomainError + Into<Failure>>(
    back: &str,
    result: Result<T, E>,
    done: impl FnOnce(T) -> PageResult,
) -> PageResult {
    match result {
        Ok(value) => done(value),
        Err(e) if e.kind() == ErrorKind::Forbidden => Err(Failure::forbidden(e.to_string()).into()),
        Err(e) if e.kind().is_users() => Ok(see_other_with_flash(back, "error", &e.to_string())),
        Err(e) => Err(e.into().into()),
    }
}

/// A form whose refusal goes back to its page with what was typed, and the error next to its
/// field when the page shows that field (else above the form).
pub struct FormBack<'a> {
    /// The page the form is on.
    pub back: &'a str,
    /// The fields the page shows an error next to (the names the domain's errors use).
    pub fields: &'a [&'a str],
    /// What was typed, put back in the fields (no password ever).
    pub typed: Vec<(&'a str, &'a str)>,
}

/// The end of a form handler with a [`FormBack`]: as [`flash_outcome_with`], but a refusal of
/// the input comes back next to its field, with what was typed.
pub fn form_outcome<T, E: DomainError + Into<Failure>>(
    form: FormBack<'_>,
    result: Result<T, E>,
    done: impl FnOnce(T) -> PageResult,
) -> PageResult {
    match result {
        Err(e) if e.kind().is_users() && e.kind() != ErrorKind::Forbidden => {
            let message = sentence(&e.to_string());
            let failure: Failure = e.into();
            let field = failure.field.as_deref().filter(|f| form.fields.contains(f));
            Ok(see_other_with_form_error(form.back, field, &message, &form.typed))
        }
        other => flash_outcome_with(form.back, other, done),
    }
}

/// Where a refused sign-up, new workspace or provisioning is shown in its form, and in which
/// words: next to `email`, `name`, `password`, `workspace` or `slug`, or above the form.
pub fn workspace_form_flash(e: &silo_accounts::Error) -> Flash {
    use silo_accounts::Error as A;
    let (field, message) = match e {
        A::Invalid { field, message } => {
            let field = match *field {
                "workspace_name" => "workspace",
                other => other,
            };
            (Some(field), sentence(message))
        }
        A::Tenancy(t) => tenancy_refusal(t),
        other => (None, sentence(&other.to_string())),
    };
    Flash { kind: "error", message, field: field.map(str::to_owned) }
}

/// A fleet's refusal of a new workspace in the words of its form: the address (`slug`) or the
/// region it is about, else above the form.
pub fn tenancy_refusal(e: &silo_tenancy::Error) -> (Option<&'static str>, String) {
    use silo_tenancy::Error as T;
    match e.root() {
        T::InvalidSlug(slug) => (Some("slug"), slug.advice()),
        T::SlugTaken(slug) => (Some("slug"), format!("The address {slug} is taken: choose another.")),
        T::Storage(silo_storage::Error::UnknownRegion(..) | silo_storage::Error::InvalidRegionName(_)) => {
            (Some("region"), sentence(&e.root().to_string()))
        }
        T::Invalid { field, message } => (Some(field), sentence(message)),
        other => (None, sentence(&other.to_string())),
    }
}

/// A message as a sentence: a capital first letter and a full stop.
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// The page number and offset of a `?page=` parameter.
pub fn page_offset(page: Option<i64>, per_page: i64) -> (i64, i64) {
    let page = page.unwrap_or(1).max(1);
    // A huge page number is an empty page, not an overflow.
    (page, (page - 1).saturating_mul(per_page))
}
