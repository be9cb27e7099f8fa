//! What the server knows about a request: its shared state, the client's address and whether
//! it came over HTTPS (through [`super::client`]'s proxy rules).

use actix_web::{HttpRequest, web};

use super::state::AppState;

/// The shared state of a request.
pub fn state(req: &HttpRequest) -> &web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered")
}

/// The client's address (as text, the throttle's key).
pub fn client_addr(req: &HttpRequest) -> String {
    let state = state(req);
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let peer = req.peer_addr().map(|a| a.ip());
    state.proxies.client(peer, &forwarded).map(|ip| ip.to_string()).unwrap_or_default()
}

/// Whether the client reached us over HTTPS: the public URL says so, or a trusted proxy's
/// `X-Forwarded-Proto` does.
pub fn is_secure(req: &HttpRequest) -> bool {
    let state = state(req);
    if state.proxies.trusts_peer(req.peer_addr().map(|a| a.ip()))
        && let Some(proto) = req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok())
    {
        return proto.trim().eq_ignore_ascii_case("https");
    }
    state.links.is_https()
}
