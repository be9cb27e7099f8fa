//! The hand-off endpoints of workspace hosts ([`super::hosts`]): `/handoff` on the main host
//! turns a signed-in member's session into a one-time token for the workspace host, and
//! `/_handoff` there redeems it (with the browser's `state` cookie) for a host-only session.

use actix_web::cookie::Cookie;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use silo_core::TenantSlug;

use super::error::{Failure, PageError};
use super::hosts::{STATE_COOKIE, WorkspaceHost};
use super::redirects::{safe_next, see_other};
use super::request::{client_addr, state};
use super::sessions::{SignedIn, session_cookie};

/// Registers `/handoff` (main host) and `/_handoff` (workspace host).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(issue).service(redeem);
}

#[derive(Deserialize)]
struct HandoffQuery {
    to: String,
    state: String,
    next: Option<String>,
}

/// Main host: a signed-in member is sent to the workspace host with a one-time token.
#[get("/handoff")]
async fn issue(
    req: HttpRequest,
    me: SignedIn,
    query: web::Query<HandoffQuery>,
) -> Result<HttpResponse, PageError> {
    let app = state(&req);
    let slug = TenantSlug::parse(&query.to).map_err(|_| Failure::not_found())?;
    // Membership first: someone outside the workspace learns nothing about it.
    // A held restore is nothing to its members (see `tenant::admit`).
    let tenant =
        app.tenancy().resolve(&slug).await.ok().filter(|t| !t.held).ok_or_else(Failure::not_found)?;
    app.accounts()
        .memberships()
        .role(tenant.id, &me.session.user_id)
        .await?
        .ok_or_else(Failure::not_found)?;
    let next = safe_next(query.next.as_deref());
    let token = app
        .accounts()
        .handoffs()
        .issue(&me.session, tenant.id, &query.state, &next)
        .await
        .map_err(|_| Failure::invalid("This sign-in link is incomplete. Open the workspace again."))?;
    let target = app
        .links
        .workspace(slug.as_str(), &format!("/_handoff?token={token}"))
        .ok_or_else(Failure::not_found)?;
    Ok(see_other(&target))
}

#[derive(Deserialize)]
struct RedeemQuery {
    token: String,
}

/// Workspace host: the token (with this browser's `state` cookie) becomes a host-only session.
#[get("/_handoff")]
async fn redeem(req: HttpRequest, query: web::Query<RedeemQuery>) -> Result<HttpResponse, PageError> {
    let Some(WorkspaceHost(slug)) = req.extensions().get::<WorkspaceHost>().cloned() else {
        return Err(Failure::not_found().into());
    };
    let expired = || {
        Failure::forbidden(format!(
            "This sign-in link has expired, was used already, or was started in another browser. Open {} again.",
            state(&req).links.workspace(slug.as_str(), "/").unwrap_or_default()
        ))
    };
    let nonce = req.cookie(STATE_COOKIE).map(|c| c.value().to_owned()).ok_or_else(expired)?;
    let app = state(&req);
    let tenant = app.tenancy().resolve(&slug).await.map_err(|_| Failure::not_found())?;
    let user_agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let redeemed = app
        .accounts()
        .handoffs()
        .redeem(&query.token, tenant.id, &nonce, user_agent, &client_addr(&req), app.session_ttl())
        .await?
        .ok_or_else(expired)?;
    let mut response = see_other(&redeemed.next);
    response
        .add_cookie(&session_cookie(&req, &redeemed.session.secret))
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let mut used = Cookie::build(STATE_COOKIE, "").path("/_handoff").finish();
    used.make_removal();
    let _ = response.add_cookie(&used);
    Ok(response)
}
