//! Who is asking, and may they: session cookies, the CSRF check of every form, and flash
//! messages. The client's address and scheme are in [`super::client`].
//!
//! - The session cookie holds a random secret (the server keeps its SHA-256, see
//!   `silo_tenancy::sessions`). It is host-only, `HttpOnly` and `SameSite=Lax`, and over HTTPS
//!   (a public URL that says so, or a trusted proxy's `X-Forwarded-Proto`) it is `Secure` and
//!   named `__Host-silo_session`, so no subdomain can set or shadow it — and then only that
//!   name is read: a plain `silo_session` cookie (which a sibling host or a network attacker
//!   on plain HTTP can plant) is ignored.
//! - Every state-changing form carries a token: the session's own, or before sign-in a random
//!   one from a `silo_csrf` cookie (double submit). [`CsrfForm`] checks it and refuses requests
//!   a browser marks as cross-site (`Sec-Fetch-Site`).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use rand::RngCore;
use serde::de::DeserializeOwned;
use silo_tenancy::sessions::Session;

use super::client::is_secure;
use super::error::{Failure, PageError};
use super::hosts::WorkspaceHost;
use super::state::AppState;

const SESSION_COOKIE: &str = "silo_session";
const SECURE_SESSION_COOKIE: &str = "__Host-silo_session";
const CSRF_COOKIE: &str = "silo_csrf";
const FLASH_COOKIE: &str = "silo_flash";

/// The shared state of a request.
pub fn state(req: &HttpRequest) -> &web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered")
}

/// The session secret of the request: over HTTPS only from the `__Host-` cookie.
pub fn session_secret(req: &HttpRequest) -> Option<String> {
    let name = if is_secure(req) { SECURE_SESSION_COOKIE } else { SESSION_COOKIE };
    req.cookie(name).map(|c| c.value().to_owned())
}

/// The request's live session, looked up once per request.
pub async fn current_session(req: &HttpRequest) -> Result<Option<Session>, Failure> {
    #[derive(Clone)]
    struct Looked(Option<Session>);
    if let Some(Looked(session)) = req.extensions().get::<Looked>() {
        return Ok(session.clone());
    }
    let session = match session_secret(req) {
        Some(secret) => state(req).tenancy.session(&secret).await?,
        None => None,
    };
    req.extensions_mut().insert(Looked(session.clone()));
    Ok(session)
}

/// The session cookie for a new session.
pub fn session_cookie(req: &HttpRequest, secret: &str) -> Cookie<'static> {
    let secure = is_secure(req);
    let name = if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE };
    Cookie::build(name, secret.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(state(req).session_ttl().as_secs() as i64))
        .finish()
}

/// Cookies that remove the session (both names).
pub fn clear_session_cookies() -> [Cookie<'static>; 2] {
    [SESSION_COOKIE, SECURE_SESSION_COOKIE].map(|name| {
        let mut cookie = Cookie::build(name, "").path("/").http_only(true).same_site(SameSite::Lax).finish();
        if name.starts_with("__Host-") {
            cookie.set_secure(true);
        }
        cookie.make_removal();
        cookie
    })
}

/// The signed-out visitor's form token (set by [`ensure_csrf_cookie`]).
#[derive(Clone)]
struct AnonymousToken(String);

/// 256 random bits, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    let token = random_token();
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
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
            let body = body.await.map_err(|e| Failure::invalid(format!("unreadable form: {e}")))?;
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
            let form = serde_urlencoded::from_bytes(&body).map_err(|e| {
                Failure::new(StatusCode::BAD_REQUEST, "invalid", format!("malformed form: {e}"))
            })?;
            Ok(CsrfForm(form))
        })
    }
}

/// A signed-in visitor (extractor). Signed-out visitors are sent to the login page, which
/// brings them back.
pub struct SignedIn {
    /// The session (with the account's id, email and name).
    pub session: Session,
}

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match current_session(&req).await.map_err(PageError)? {
                Some(session) => Ok(SignedIn { session }),
                None => {
                    let next = if req.method() == actix_web::http::Method::GET {
                        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned()
                    } else {
                        "/".to_owned()
                    };
                    let host = req.extensions().get::<WorkspaceHost>().cloned();
                    let response = match host {
                        // A workspace's own host has no sign-in: the main host hands a session over.
                        Some(host) => super::hosts::start_handoff(&req, &host, &next),
                        None => see_other(&format!("/login?next={}", urlencode(&next))),
                    };
                    Err(actix_web::error::InternalError::from_response("sign in first", response).into())
                }
            }
        })
    }
}

/// A signed-in operator (extractor); anyone else gets 404, so the console is not advertised.
pub struct Operator {
    /// The operator's session.
    pub session: Session,
}

impl FromRequest for Operator {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let signed_in = SignedIn::from_request(&req, payload);
        Box::pin(async move {
            let SignedIn { session } = signed_in.await?;
            if state(&req).tenancy.is_operator(&session.user_id).await.map_err(PageError::from)? {
                Ok(Operator { session })
            } else {
                Err(PageError(Failure::not_found()).into())
            }
        })
    }
}

/// Percent-encodes a query-string value.
pub fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

/// A local path to return to after sign-in, else `/`. Accepted: one `/` followed by a
/// character that is neither `/` nor a backslash, and no control character or whitespace
/// anywhere — browsers drop tabs and newlines and read a backslash as `/`, so `/<tab>/evil.example`
/// or `/<backslash>evil` would lead to another site.
pub fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        let mut chars = n.chars();
        chars.next() == Some('/')
            && chars.next().is_none_or(|c| c != '/' && c != '\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    match next {
        Some(n) if local(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// A redirect after a form (303, so the browser follows with GET).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).finish()
}

/// A redirect that shows a message on the next page.
pub fn see_other_with_flash(location: &str, kind: &str, message: &str) -> HttpResponse {
    let mut response = see_other(location);
    let cookie = Cookie::build(FLASH_COOKIE, urlencode(&format!("{kind}|{message}")))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(60))
        .finish();
    let _ = response.add_cookie(&cookie);
    response
}

/// The flash message of this request, if any: `(kind, message)`.
pub fn take_flash(req: &HttpRequest) -> Option<(String, String)> {
    let raw = req.cookie(FLASH_COOKIE)?;
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={}", raw.value())).ok()?;
    let (kind, message) =
        decoded.into_iter().next()?.1.split_once('|').map(|(k, m)| (k.to_owned(), m.to_owned()))?;
    let kind = if kind == "error" { kind } else { "ok".to_owned() };
    Some((kind, message))
}

/// The cookie that removes a shown flash message.
pub fn flash_removal() -> Cookie<'static> {
    let mut cookie = Cookie::build(FLASH_COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/w/acme/")), "/w/acme/");
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(Some("/w/acme/tasks/1?x=a%20b")), "/w/acme/tasks/1?x=a%20b");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "evil",
            "/\\evil.example",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/w/acme\u{7f}",
            "/\u{a0}/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn tokens_compare_fully() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""), "an empty token never matches");
    }
}
