//! What the server knows about a request: its shared state, the client's address and whether
//! it came over HTTPS (through [`super::client`]'s proxy rules, or as the server of the cluster
//! that forwarded it saw them: [`super::cluster`]).

use actix_web::{HttpMessage, HttpRequest, web};

use super::state::AppState;

/// The client's address and whether it came over HTTPS, as the server of the cluster that
/// forwarded the request saw them: a request extension `cluster` sets only on a request that
/// carries the cluster's secret.
#[derive(Clone, Debug)]
pub struct ForwardedOrigin {
    /// The client's address.
    pub client: String,
    /// Whether it came over HTTPS.
    pub secure: bool,
}

/// The shared state of a request.
pub fn state(req: &HttpRequest) -> &web::Data<AppState> {
    req.app_data::<web::Data<AppState>>().expect("AppState is registered")
}

/// The client's address (as text, the throttle's key).
pub fn client_addr(req: &HttpRequest) -> String {
    if let Some(origin) = req.extensions().get::<ForwardedOrigin>() {
        return origin.client.clone();
    }
    let state = state(req);
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let peer = req.peer_addr().map(|a| a.ip());
    state.proxies.client(peer, &forwarded).map(|ip| ip.to_string()).unwrap_or_default()
}

/// Whether the client reached us over HTTPS: the public URL says so, or a trusted proxy's
/// `X-Forwarded-Proto` does.
pub fn is_secure(req: &HttpRequest) -> bool {
    if let Some(origin) = req.extensions().get::<ForwardedOrigin>() {
        return origin.secure;
    }
    let state = state(req);
    if state.proxies.trusts_peer(req.peer_addr().map(|a| a.ip()))
        && let Some(proto) = req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok())
    {
        return proto.trim().eq_ignore_ascii_case("https");
    }
    state.links.is_https()
}
