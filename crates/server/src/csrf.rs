//! The CSRF check of every form: each state-changing form carries a token — the session's own,
//! or before sign-in a random one from a `silo_csrf` cookie (double submit). [`CsrfForm`]
//! checks it and refuses requests a browser marks as cross-site (`Sec-Fetch-Site`).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde::de::DeserializeOwned;
use silo_core::tokens::random_hex;

use super::error::{Failure, PageError};
use super::request::is_secure;
use super::sessions::current_session;

const CSRF_COOKIE: &str = "silo_csrf";

/// The signed-out visitor's form token (set by [`ensure_csrf_cookie`]).
#[derive(Clone)]
struct AnonymousToken(String);

/// Whether responses under `path` may carry forms (so need the signed-out form token).
pub fn has_forms(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/static/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}

/// Middleware step: gives a visitor without one a `silo_csrf` cookie, so forms shown before
/// sign-in carry a token. Returns the cookie to set on the response, if a new one was made.
pub fn ensure_csrf_cookie(req: &HttpRequest) -> Option<Cookie<'static>> {
    if let Some(existing) = req.cookie(CSRF_COOKIE).filter(|c| c.value().len() == 64) {
        req.extensions_mut().insert(AnonymousToken(existing.value().to_owned()));
        return None;
    }
    let token = random_hex(32);
    req.extensions_mut().insert(AnonymousToken(token.clone()));
    Some(
        Cookie::build(CSRF_COOKIE, token)
            .path("/")
            .http_only(true)
            .secure(is_secure(req))
            .same_site(SameSite::Strict)
            .finish(),
    )
}

/// The token forms of this request must carry.
pub async fn csrf_token(req: &HttpRequest) -> Result<String, Failure> {
    if let Some(session) = current_session(req).await? {
        return Ok(session.csrf_token);
    }
    Ok(req.extensions().get::<AnonymousToken>().map(|t| t.0.clone()).unwrap_or_default())
}

/// Constant-time comparison of two secrets (never equal when empty).
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && silo_core::secret::constant_time_eq(a, b)
}

fn csrf_failure() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "This form has expired or came from another site. Go back, reload the page and try again.",
    )
}

/// Refuses requests the browser says come from another site.
pub fn check_fetch_site(req: &HttpRequest) -> Result<(), Failure> {
    match req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(csrf_failure()),
    }
}

/// The largest form body read (bigger ones answer 413 before anything is parsed).
pub const FORM_LIMIT: usize = 64 * 1024;

/// A urlencoded form whose `csrf` field matched the request's token. Every state-changing
/// HTML handler takes its input through this extractor.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    Failure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "The form is too large (at most {} KiB); nothing was saved.",
                            FORM_LIMIT / 1024
                        ),
                    )
                } else {
                    Failure::invalid(format!("unreadable form: {e}"))
                }
            })?;
            check_fetch_site(&req)?;
            #[derive(serde::Deserialize)]
            struct Token {
                csrf: Option<String>,
            }
            let sent: Token = serde_urlencoded::from_bytes(&body).map_err(|_| csrf_failure())?;
            let expected = csrf_token(&req).await?;
            if !same_token(sent.csrf.as_deref().unwrap_or_default(), &expected) {
                // The route pattern, never the path: paths carry reset and invitation tokens.
                tracing::warn!(
                    route = req.match_pattern().as_deref().unwrap_or("-"),
                    "form refused: CSRF token missing or wrong"
                );
                return Err(csrf_failure().into());
            }
            // No page sends a NUL character (a hand-made request does): refused before any
            // field reaches a control-plane column that cannot keep it.
            if form_urlencoded::parse(&body).any(|(name, value)| name.contains('\0') || value.contains('\0'))
            {
                return Err(crate::api::input::nul_refused().into());
            }
            // Only a hand-made request lacks a field the page's form always sends: said in
            // words, the parser's kept for the log.
            let form = serde_urlencoded::from_bytes(&body).map_err(|e| {
                tracing::debug!(error = %e, "form refused: unreadable");
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "This form arrived incomplete or unreadable: reload the page and try again.",
                )
            })?;
            Ok(CsrfForm(form))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_fully() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""), "an empty token never matches");
    }
}
