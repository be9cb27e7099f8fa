//! Workspaces on their own host: `{slug}.{base_domain}` (with `server.base_domain`).
//!
//! On such a host:
//! - `/…` is the workspace (`/` → `/w/{slug}/`, `/members` → `/w/{slug}/members`), and the
//!   workspace's own `/w/{slug}/…` links work as they are;
//! - the site's account pages (`/login`, `/signup`, `/account`, `/admin`, …) and other
//!   workspaces are on the main host: the browser is sent there;
//! - there is no sign-in form. Session cookies are host-only (never `Domain=`, which would hand
//!   the session to every tenant's host), so a visitor without a session here is sent to the
//!   main host's `/handoff`, which — once signed in there, and a member — issues a one-time
//!   token that `/_handoff` on the workspace host redeems for a host-only session
//!   (see `silo_tenancy::handoffs`, which also explains the `state` cookie). The two endpoints are
//!   in the `handoff` module.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::ServiceRequest;
use actix_web::http::Uri;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use silo_core::TenantSlug;

use super::redirects::{safe_next, see_other, urlencode};
use super::request::{is_secure, state};
use silo_core::tokens::random_hex;

/// The request came to this workspace's own host (a request extension).
#[derive(Clone, Debug)]
pub struct WorkspaceHost(pub TenantSlug);

/// The cookie that binds a hand-off to the browser that started it.
pub(super) const STATE_COOKIE: &str = "silo_handoff";

/// What to do with a request to a workspace host.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Serve the path as it is.
    AsIs,
    /// Serve it as this workspace path.
    Workspace(String),
    /// It lives on the main host.
    MainHost,
}

/// Paths whose first segment belongs to the main host.
const MAIN_HOST_PAGES: &[&str] =
    &["login", "signup", "account", "admin", "password", "invitations", "handoff", "w"];

fn route(slug: &str, path: &str) -> Route {
    let own = format!("/w/{slug}");
    if path == own || path.starts_with(&format!("{own}/")) {
        return Route::AsIs;
    }
    if path.starts_with("/static/")
        || path.starts_with("/api/")
        || matches!(path, "/_handoff" | "/logout" | "/healthz" | "/readyz" | "/metrics")
    {
        return Route::AsIs;
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    if MAIN_HOST_PAGES.contains(&first) {
        return Route::MainHost;
    }
    Route::Workspace(format!("{own}{path}"))
}

/// Middleware step (outermost): marks and rewrites requests to a workspace host, or answers
/// with a redirect to the main host.
pub fn dispatch(req: &mut ServiceRequest) -> Option<HttpResponse> {
    // Borrowed, not cloned: this runs on every request, and most are not for a workspace host.
    let host = req.headers().get(actix_web::http::header::HOST).and_then(|h| h.to_str().ok())?;
    let slug = state(req.request()).links.workspace_of_host(host)?;
    match route(slug.as_str(), req.path()) {
        Route::AsIs => {}
        Route::Workspace(path) => {
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("{path}{query}").parse::<Uri>() {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
        }
        Route::MainHost => {
            let path_and_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            return Some(see_other(&state(req.request()).links.main(path_and_query)));
        }
    }
    req.extensions_mut().insert(WorkspaceHost(slug));
    None
}

/// Sends a visitor without a session on a workspace host to the main host for a hand-off
/// (and back to `next` afterwards).
pub fn start_handoff(req: &HttpRequest, host: &WorkspaceHost, next: &str) -> HttpResponse {
    let app = state(req);
    let nonce = random_hex(32);
    let query = format!("to={}&state={nonce}&next={}", host.0, urlencode(&safe_next(Some(next))));
    let mut response = see_other(&app.links.main(&format!("/handoff?{query}")));
    let cookie = Cookie::build(STATE_COOKIE, nonce)
        .path("/_handoff")
        .http_only(true)
        .secure(is_secure(req))
        .same_site(SameSite::Lax)
        .max_age(time::Duration::minutes(10))
        .finish();
    let _ = response.add_cookie(&cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_hosts_serve_the_workspace_and_send_the_rest_to_the_main_host() {
        assert_eq!(route("acme", "/"), Route::Workspace("/w/acme/".into()));
        assert_eq!(route("acme", "/members"), Route::Workspace("/w/acme/members".into()));
        assert_eq!(route("acme", "/w/acme/tasks/3"), Route::AsIs, "the workspace's own links work");
        assert_eq!(route("acme", "/w/acme"), Route::AsIs);
        assert_eq!(route("acme", "/w/other/"), Route::MainHost, "another workspace");
        assert_eq!(route("acme", "/w/acmeco/"), Route::MainHost, "a prefix is not the workspace");
        for main in [
            "/login",
            "/signup",
            "/account",
            "/admin/tenants",
            "/password/forgot",
            "/invitations/x",
            "/handoff",
        ] {
            assert_eq!(route("acme", main), Route::MainHost, "{main}");
        }
        for as_is in ["/static/silo.css", "/_handoff", "/logout", "/api/v1/w/acme/tasks", "/healthz"] {
            assert_eq!(route("acme", as_is), Route::AsIs, "{as_is}");
        }
    }
}
