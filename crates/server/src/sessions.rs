//! Who is asking: the session cookie and the signed-in extractors.
//!
//! The session cookie holds a random secret (the server keeps its SHA-256, see
//! `silo_accounts::sessions`). It is host-only, `HttpOnly` and `SameSite=Lax`, and over HTTPS (a
//! public URL that says so, or a trusted proxy's `X-Forwarded-Proto`) it is `Secure` and named
//! `__Host-silo_session`, so no subdomain can set or shadow it — and then only that name is
//! read: a plain `silo_session` cookie (which a sibling host or a network attacker on plain
//! HTTP can plant) is ignored.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse};
use silo_accounts::By;
use silo_accounts::sessions::Session;

use super::error::{Failure, PageError};
use super::hosts::{WorkspaceHost, start_handoff};
use super::redirects::{see_other, urlencode};
use super::request::{is_secure, state};

const SESSION_COOKIE: &str = "silo_session";
const SECURE_SESSION_COOKIE: &str = "__Host-silo_session";

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
        Some(secret) => state(req).accounts().sessions().find(&secret).await?,
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

/// Signs this browser out in `response`: removes the session cookies and, since workspace pages
/// are kept by the browser (revalidated before every use, see `Page::validated_by`), clears
/// its cache, so nobody at it later finds them in its cache or history.
pub fn sign_out_browser(response: &mut HttpResponse) {
    for cookie in clear_session_cookies() {
        let _ = response.add_cookie(&cookie);
    }
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("clear-site-data"),
        actix_web::http::header::HeaderValue::from_static("\"cache\""),
    );
}

/// A signed-in visitor (extractor). Signed-out visitors are sent to the login page, which
/// brings them back.
pub struct SignedIn {
    /// The session (with the account's id, email and name).
    pub session: Session,
}

impl SignedIn {
    /// This person as the actor of a membership change (the role rules apply to them).
    pub fn acting(&self) -> By<'_> {
        By::Member { user_id: &self.session.user_id, label: &self.session.email }
    }
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
                        Some(host) => start_handoff(&req, &host, &next),
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
            if state(&req).accounts().users().is_operator(&session.user_id).await.map_err(PageError::from)? {
                Ok(Operator { session })
            } else {
                Err(PageError(Failure::not_found()).into())
            }
        })
    }
}
