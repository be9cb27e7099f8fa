//! HTTP errors: domain errors mapped to status codes, rendered as an HTML page or as the JSON
//! API's `{ "error": { "code", "message" } }`. Internals never reach the client; the log gets
//! the full cause.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use silo_core::ErrorKind;
use silo_tenancy::Error;

/// A failure as the client sees it.
#[derive(Debug)]
pub struct Failure {
    /// Status code.
    pub status: StatusCode,
    /// Short machine-readable code (`not_found`, `csrf`, …).
    pub code: &'static str,
    /// Message safe to show.
    pub message: String,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// The field of the request it is about (the API's `"field"`), when it is about one.
    pub field: Option<String>,
    /// Where the person can go about it (an error page's link): `(href, text)`. Boxed: it is
    /// rare, and every `Result` carrying a failure would pay for its size.
    pub link: Option<Box<(String, String)>>,
}

impl Failure {
    /// A failure with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, field: None, link: None }
    }

    /// With a link the error page offers (a local path, and what it leads to).
    pub fn with_link(mut self, href: impl Into<String>, text: impl Into<String>) -> Self {
        self.link = Some(Box::new((href.into(), text.into())));
        self
    }

    /// About the request's field `field` (an empty name: about none).
    pub fn on_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// 304: the caller's copy (`If-None-Match: etag`) is current. Carries the validator in
    /// `message`; answered with no body.
    pub fn not_modified(etag: String) -> Self {
        Self::new(StatusCode::NOT_MODIFIED, "not_modified", etag)
    }

    /// 404 — also what a user gets for another tenant's routes and objects.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "There is nothing here.")
    }

    /// 400 / 422 for bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "A valid bearer token is required.")
    }

    /// 409: what was checked changed meanwhile, or the state does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 with the wait.
    pub fn throttled(wait: std::time::Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "throttled", "Too many attempts; wait and retry.")
            .retry_after(wait)
    }

    /// 503: the machine is saturated (its cause goes to the log).
    pub fn overloaded(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "overloaded");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The server is busy; retry in a moment.")
            .retry_after(std::time::Duration::from_secs(1))
    }

    /// 500: a fault of ours (its cause goes to the log, never to the client).
    pub fn internal(cause: &dyn std::fmt::Debug) -> Self {
        tracing::error!(error = ?cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side.")
    }

    /// A failure of creating something named by the caller (a tenant): a slug that does not
    /// parse is the caller's input (422 naming why), where looking one up answers 404.
    pub fn creating(error: silo_billing::Error) -> Self {
        match tenancy_root(&error) {
            Some(Error::InvalidSlug(why)) => Self::invalid(why.to_string()).on_field("slug"),
            _ => error.into(),
        }
    }

    /// With a `Retry-After` of `wait`, in whole seconds rounded up (a client that waits what
    /// it is told must not come back early), at least one.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(seconds.max(1));
        self
    }
}

/// A layer's error as the web layer answers it: its kind and its words.
pub trait DomainError: std::fmt::Display {
    /// What kind of failure it is.
    fn kind(&self) -> ErrorKind;
}

impl DomainError for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

impl DomainError for silo_jobs::Error {
    fn kind(&self) -> ErrorKind {
        silo_jobs::Error::kind(self)
    }
}

impl DomainError for silo_workspace::Error {
    fn kind(&self) -> ErrorKind {
        silo_workspace::Error::kind(self)
    }
}

impl DomainError for silo_accounts::Error {
    fn kind(&self) -> ErrorKind {
        silo_accounts::Error::kind(self)
    }
}

impl DomainError for silo_billing::Error {
    fn kind(&self) -> ErrorKind {
        silo_billing::Error::kind(self)
    }
}

/// The fleet's error at the root of a billing error, if that is where it came from.
fn tenancy_root(error: &silo_billing::Error) -> Option<&Error> {
    use silo_accounts::Error as A;
    use silo_billing::Error as B;
    match error {
        B::Tenancy(e) | B::Workspace(silo_workspace::Error::Tenancy(e)) => Some(e.root()),
        B::Accounts(A::Tenancy(e) | A::Workspace(silo_workspace::Error::Tenancy(e))) => Some(e.root()),
        _ => None,
    }
}

impl From<silo_jobs::Error> for Failure {
    fn from(error: silo_jobs::Error) -> Self {
        Error::from(error).into()
    }
}

impl From<silo_workspace::Error> for Failure {
    fn from(error: silo_workspace::Error) -> Self {
        match error {
            silo_workspace::Error::Invalid { field, message } => Self::invalid(message).on_field(field),
            silo_workspace::Error::Tenancy(e) => e.into(),
        }
    }
}

impl From<silo_accounts::Error> for Failure {
    /// The accounts' own refusals in their words; what came from below as the layer below
    /// answers it.
    fn from(error: silo_accounts::Error) -> Self {
        use silo_accounts::Error as A;
        match error {
            A::Invalid { field, message } => Self::invalid(message).on_field(field),
            A::LimitReached(message) => Self::invalid(message),
            A::UnknownUser(_) => Self::invalid("There is no account with that email."),
            A::Forbidden(message) => Self::forbidden(message),
            A::Throttled(wait) => Self::throttled(wait),
            A::Busy(message) | A::Conflict(message) => Self::conflict(message),
            A::Overloaded(message) => Self::overloaded(&message),
            A::Config(_) => Self::internal(&error),
            A::Workspace(e) => e.into(),
            A::Tenancy(e) => e.into(),
            A::Jobs(e) => e.into(),
            A::Database(e) => Error::Database(e).into(),
        }
    }
}

impl From<silo_billing::Error> for Failure {
    /// Billing's own refusals in its words; what came from below as the layer below answers it.
    fn from(error: silo_billing::Error) -> Self {
        use silo_billing::Error as B;
        match error {
            B::Invalid { field, message } => Self::invalid(message).on_field(field),
            B::LimitReached(message) => Self::invalid(message),
            B::Forbidden(message) => Self::forbidden(message),
            B::Throttled(wait) => Self::throttled(wait),
            B::UnknownInvoice(_) => Self::not_found(),
            B::Busy(message) => Self::conflict(message),
            B::Accounts(e) => e.into(),
            B::Workspace(e) => e.into(),
            B::Tenancy(e) => e.into(),
            B::Jobs(e) => e.into(),
            B::Database(e) => Error::Database(e).into(),
        }
    }
}

impl From<Error> for Failure {
    /// One mapping for the pages and the API, from [`Error::kind`]; the message is the error's
    /// own where it speaks to the caller, a fixed one where it would expose internals.
    fn from(error: Error) -> Self {
        use StatusCode as S;
        let root = error.root();
        match error.kind() {
            ErrorKind::NotFound => Self::not_found(),
            ErrorKind::Forbidden => Self::forbidden(root.to_string()),
            ErrorKind::Invalid => match root {
                Error::Invalid { field, message } => Self::invalid(message.clone()).on_field(*field),
                // PostgreSQL's text holds no NUL character (SQLite's does).
                Error::Database(_) => Self::invalid(
                    "The text holds a character that cannot be stored (NUL): remove it and try again.",
                ),
                other => Self::invalid(other.to_string()),
            },
            ErrorKind::Conflict => Self::conflict(match root {
                Error::SlugTaken(slug) => format!("The address `{slug}` is already taken."),
                other => other.to_string(),
            }),
            ErrorKind::Locked => Self::new(S::LOCKED, "suspended", "This workspace is suspended."),
            ErrorKind::Gone => {
                let message = match root {
                    Error::LinkGone(message) => message.clone(),
                    Error::KeyDestroyed(_) => root.to_string(),
                    _ => "This workspace has been deleted.".to_owned(),
                };
                Self::new(S::GONE, "gone", message)
            }
            ErrorKind::Throttled => match root {
                // A daily allowance: its own words, and the wait until the next may start.
                Error::AllowanceUsed { message, wait } => {
                    Self::new(S::TOO_MANY_REQUESTS, "throttled", message.clone()).retry_after(*wait)
                }
                _ => Self::throttled(std::time::Duration::from_secs(1)),
            },
            ErrorKind::Unavailable
                if matches!(root, Error::Database(_) | Error::Jobs(silo_jobs::Error::Database(_))) =>
            {
                tracing::error!(error = %root, "the control plane's database cannot be reached");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The server cannot reach its database right now, so nothing was done; retry in a moment.",
                )
                .retry_after(std::time::Duration::from_secs(5))
            }
            // A server of a cluster that may not serve the tenant now: its own words (which
            // server has it, or that this one lost its lease), and a short wait.
            ErrorKind::Elsewhere | ErrorKind::Unavailable
                if matches!(root, Error::Elsewhere { .. } | Error::NotServing(_)) =>
            {
                Self::new(S::SERVICE_UNAVAILABLE, "unavailable", format!("{root}; retry in a moment."))
                    .retry_after(std::time::Duration::from_secs(2))
            }
            ErrorKind::Unavailable | ErrorKind::Elsewhere => Self::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "This workspace is briefly unavailable (maintenance); retry in a moment.",
            )
            .retry_after(std::time::Duration::from_secs(5)),
            ErrorKind::Overloaded => Self::overloaded(root),
            ErrorKind::DiskFull if matches!(root, Error::DiskLow(_)) => {
                tracing::error!(error = %root, "disk low: refused");
                Self::new(S::SERVICE_UNAVAILABLE, "disk_low", root.to_string())
                    .retry_after(std::time::Duration::from_secs(600))
            }
            ErrorKind::DiskFull => {
                tracing::error!(error = %root, "disk full");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "disk_full",
                    "The server's disk is full, so nothing was saved; operators have been told.",
                )
                .retry_after(std::time::Duration::from_secs(60))
            }
            ErrorKind::QuotaExceeded => Self::new(
                S::INSUFFICIENT_STORAGE,
                "storage_quota_exceeded",
                "Storage quota exceeded: this workspace's plan allows no more data, so this was not saved. Delete something, or choose a larger plan.",
            ),
            ErrorKind::Broken => {
                tracing::error!(error = %error, "tenant cannot be served");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "This workspace cannot be served right now; operators have been told.",
                )
            }
            ErrorKind::Internal => Self::internal(&error),
        }
    }
}

/// The code of a page refused because of too many wrong passwords: its page links the reset.
pub const PASSWORD_THROTTLED: &str = "password_throttled";

/// The error page (404, 403, 410, 423, 429, 500, 503) in the site's style, without the
/// signed-in header (see [`error_page_with`]).
pub fn error_page(failure: &Failure) -> HttpResponse {
    error_page_with(failure, tera::Context::new())
}

/// The error page over `context`: the signed-in header's `me` and `csrf` when the pages'
/// middleware found a session (`pages::signed_in_errors`).
pub fn error_page_with(failure: &Failure, mut context: tera::Context) -> HttpResponse {
    let title = match failure.status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        410 => "Gone",
        423 => "Suspended",
        429 => "Slow down",
        503 => "Unavailable",
        s if s >= 500 => "Something broke",
        _ => "That did not work",
    };
    context.insert("status", &failure.status.as_u16());
    context.insert("title", title);
    context.insert("message", &failure.message);
    context.insert("reset_link", &(failure.code == PASSWORD_THROTTLED));
    context.insert("link", &failure.link);
    let html = super::templates::TEMPLATES.render("error.html", &context).unwrap_or_else(|e| {
        tracing::error!(error = ?e, "error template failed");
        format!("<!doctype html><title>{title}</title><p>{}", failure.status)
    });
    // Never stored: a signed-in error page names its account and carries its form token.
    let mut response = HttpResponse::build(failure.status)
        .content_type("text/html; charset=utf-8")
        .insert_header(header::CacheControl(vec![header::CacheDirective::NoStore]))
        .body(html);
    add_retry_after(&mut response, failure.retry_after);
    response
}

/// A failure rendered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub Failure);

impl<E: Into<Failure>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.message)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.0.status == StatusCode::NOT_MODIFIED {
            return not_modified(&self.0.message, PRIVATE_PAGE);
        }
        error_page(&self.0)
    }
}

/// A failure rendered as the JSON API's error document.
#[derive(Debug)]
pub struct ApiError(pub Failure);

impl<E: Into<Failure>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl ApiError {
    /// About the request's field `field` — when it is a refusal of the request's input (422):
    /// a fault of the server or the machine is about no field.
    pub fn on_field(self, field: &str) -> Self {
        if self.0.status == StatusCode::UNPROCESSABLE_ENTITY { Self(self.0.on_field(field)) } else { self }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.message)
    }
}

/// `Cache-Control` of validated reads: any cache may keep the answer only for this caller and
/// must ask again before using it (`If-None-Match`, answered 304 while the data is unchanged).
pub const REVALIDATE: &str = "private, no-cache";

/// `Cache-Control` of a signed-in person's pages: kept nowhere. A browser restores a page it
/// kept (its back/forward cache) without asking, even after its user signed out, so the next
/// person at a shared computer pressing Back would read it; `no-store` is what makes browsers
/// ask again. The page's validator still answers 304 to a client that sends it.
pub const PRIVATE_PAGE: &str = "private, no-cache, no-store";

/// Whether the request's `If-None-Match` names `etag` (or is `*`). Weak validators (`W/"…"`)
/// compare by their tag, as RFC 9110 says `If-None-Match` does.
pub fn matches_if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(actix_web::http::header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).any(
        |value| value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag),
    )
}

/// 304 for a caller whose copy (`If-None-Match`) is `etag`: no body, the validator again,
/// with the `Cache-Control` of the answer it stands for.
fn not_modified(etag: &str, cache_control: &'static str) -> HttpResponse {
    HttpResponse::NotModified()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .finish()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.0.status == StatusCode::NOT_MODIFIED {
            return not_modified(&self.0.message, REVALIDATE);
        }
        let mut error = serde_json::json!({ "code": self.0.code, "message": self.0.message });
        if let Some(field) = &self.0.field {
            error["field"] = serde_json::Value::from(field.as_str());
        }
        let body = serde_json::json!({ "error": error });
        // Never stored by a cache: an error answers one caller's request.
        let mut response = HttpResponse::build(self.0.status)
            .insert_header(header::CacheControl(vec![header::CacheDirective::NoStore]))
            .json(body);
        add_retry_after(&mut response, self.0.retry_after);
        response
    }
}

fn add_retry_after(response: &mut HttpResponse, seconds: Option<u64>) {
    if let Some(seconds) = seconds {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_so_clients_never_come_back_early() {
        let wait = |d: Duration| Failure::invalid("x").retry_after(d).retry_after;
        assert_eq!(wait(Duration::from_millis(1_500)), Some(2));
        assert_eq!(wait(Duration::from_secs(3)), Some(3));
        assert_eq!(wait(Duration::from_millis(1)), Some(1));
        assert_eq!(wait(Duration::ZERO), Some(1), "at least a second");
        let throttled = Failure::from(silo_accounts::Error::Throttled(Duration::from_millis(59_001)));
        assert_eq!((throttled.status.as_u16(), throttled.retry_after), (429, Some(60)));
    }

    #[test]
    fn the_status_comes_from_the_kind_and_the_context() {
        let bad_slug = || {
            let parsed = silo_core::TenantSlug::parse("../etc").unwrap_err();
            silo_billing::Error::Tenancy(Error::InvalidSlug(parsed))
        };
        // Looking a tenant up by a malformed slug finds nothing; creating one names the slug.
        assert_eq!(Failure::from(bad_slug()).status.as_u16(), 404);
        let creating = Failure::creating(bad_slug());
        assert_eq!((creating.status.as_u16(), creating.code), (422, "invalid"));
        assert!(creating.message.contains("slug"), "{}", creating.message);
        // Each layer's own refusal keeps its words, wherever it was wrapped.
        let taken = silo_billing::Error::Accounts(silo_accounts::Error::invalid("email", "already a member"));
        assert_eq!(Failure::from(taken).message, "already a member");
        let gone = Failure::from(silo_accounts::Error::Tenancy(Error::LinkGone("this link expired".into())));
        assert_eq!((gone.status.as_u16(), gone.message.as_str()), (410, "this link expired"));
        let missing = Failure::from(silo_billing::Error::UnknownInvoice("7".into()));
        assert_eq!(missing.status.as_u16(), 404);
    }
}
