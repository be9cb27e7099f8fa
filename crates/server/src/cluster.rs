//! Any server of a cluster answers any request: one for a tenant another server owns (see
//! `silo_tenancy::ownership`) is forwarded to that server over HTTP and its answer streamed
//! back.
//!
//! - Which requests: the workspace's pages (`/w/{slug}/…`, workspace hosts once rewritten), the
//!   workspace API (`/api/v1/w/{slug}/…`), the operator API on one tenant
//!   (`/api/v1/tenants/{slug}…`: a plan change reaches its open file, a purge its file) and the
//!   console's tenant pages (`/admin/tenants/{id}…`). Everything else reads or writes only the control plane, which
//!   every server shares.
//! - A forwarded request carries `X-Silo-Forwarded: <[cluster] secret>`, with the client's
//!   address (`X-Silo-Client`) and scheme (`X-Silo-Scheme`) as the first server saw them. The
//!   owner believes those two only with the secret, and never forwards such a request again
//!   (a tenant that changed hands meanwhile answers 503 and the client retries).
//! - Sessions, tokens, cookies and CSRF tokens live in the shared control plane, so they are
//!   the same on every server; the request goes on with its headers and body as they came.
//! - Where the tenant's owner is comes from the control plane, remembered for a second. An
//!   owner whose lease ran out is not forwarded to: this server takes the tenant over.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures::StreamExt;
use silo_core::{Secret, TenantId, TenantRef};
use silo_tenancy::ownership::Owner;

use super::error::{ApiError, Failure, error_page};
use super::request::{ForwardedOrigin, state};
use actix_web::ResponseError;
use actix_web::http::StatusCode;

/// The header that marks (and authenticates) a request forwarded by another server.
const FORWARDED: &str = "x-silo-forwarded";
/// The client's address, as the forwarding server saw it.
const CLIENT: &str = "x-silo-client";
/// `http` or `https`, as the forwarding server saw it.
const SCHEME: &str = "x-silo-scheme";

/// The largest request body forwarded: the larger of the owner's own limits (forms
/// `csrf::FORM_LIMIT`, JSON `api::input::BODY_LIMIT`); a larger one would be refused there.
const BODY_LIMIT: usize = 1024 * 1024;

/// Headers of one connection, not of the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Forwards requests to the servers that own their tenants (in the server's state when the
/// server runs in a cluster).
pub struct Forwarder {
    secret: Secret,
    client: reqwest::Client,
    /// Tenant → its owner (or none: serve here), for a second.
    owners: moka::sync::Cache<TenantId, Option<Owner>>,
}

impl Forwarder {
    /// A forwarder authenticating with the cluster's `secret`.
    pub fn new(secret: Secret) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // Straight to the other server: never through an `HTTP_PROXY` with the secret.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            // An owner that stops answering mid-way frees the request (an export download
            // streams: the wait is per read, not for the whole answer).
            .read_timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let owners =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(1)).build();
        Ok(Self { secret, client, owners })
    }

    /// Whether `req` was forwarded by a server of this cluster (it carries the secret).
    pub fn forwarded_by_peer(&self, req: &HttpRequest) -> bool {
        req.headers()
            .get(FORWARDED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| silo_core::secret::constant_time_eq(v, self.secret.expose()))
    }

    /// The client's address and whether it came over HTTPS, as the forwarding server saw
    /// them, when `req` was forwarded by one.
    fn origin(&self, req: &HttpRequest) -> Option<ForwardedOrigin> {
        if !self.forwarded_by_peer(req) {
            return None;
        }
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        Some(ForwardedOrigin { client: header(CLIENT).to_owned(), secure: header(SCHEME) == "https" })
    }
}

impl Forwarder {
    /// Calls `/cluster/v1/tenants/{tenant}/{what}` on the server at `advertise`, with the
    /// cluster's secret.
    async fn to_peer(
        &self,
        method: reqwest::Method,
        advertise: &str,
        tenant: TenantId,
        what: &str,
    ) -> silo_tenancy::Result<reqwest::Response> {
        let url = format!("{}/cluster/v1/tenants/{tenant}/{what}", advertise.trim_end_matches('/'));
        self.client
            .request(method, url)
            .header(FORWARDED, self.secret.expose())
            .send()
            .await
            .map_err(|e| peer_refused(advertise, e.to_string()))
    }
}

/// Another server of the cluster could not be asked, or refused.
fn peer_refused(advertise: &str, why: String) -> silo_tenancy::Error {
    silo_tenancy::Error::NotServing(format!("server {advertise}: {why}"))
}

impl silo_tenancy::peers::Peers for Forwarder {
    fn prepare<'a>(
        &'a self,
        advertise: &'a str,
        tenant: TenantId,
    ) -> futures::future::BoxFuture<'a, silo_tenancy::Result<()>> {
        Box::pin(async move {
            let answer = self.to_peer(reqwest::Method::POST, advertise, tenant, "prepare").await?;
            let status = answer.status();
            if status.is_success() {
                return Ok(());
            }
            let text = answer.text().await.unwrap_or_default();
            Err(peer_refused(advertise, format!("{status} {}", text.chars().take(500).collect::<String>())))
        })
    }

    fn forget<'a>(
        &'a self,
        advertise: &'a str,
        tenant: TenantId,
    ) -> futures::future::BoxFuture<'a, silo_tenancy::Result<bool>> {
        Box::pin(async move {
            let answer = self.to_peer(reqwest::Method::DELETE, advertise, tenant, "prepared").await?;
            match answer.status().as_u16() {
                204 => Ok(true),
                200 => Ok(false),
                status => Err(peer_refused(advertise, format!("answered {status}"))),
            }
        })
    }
}

/// The routes the servers of a cluster call on each other.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/cluster/v1/tenants/{id}/prepare", web::post().to(prepare))
        .route("/cluster/v1/tenants/{id}/prepared", web::delete().to(forget));
}

/// Whether `req` comes from a server of this cluster (it carries the cluster's secret): the
/// cluster's routes answer anything else 404, as outside a cluster.
fn from_peer(req: &HttpRequest) -> bool {
    let forwarder = req.app_data::<Option<web::Data<Forwarder>>>().cloned().flatten();
    forwarder.is_some_and(|f| f.forwarded_by_peer(req))
}

/// `POST /cluster/v1/tenants/{id}/prepare`: a server of the cluster about to move a tenant
/// here asks this one to restore it from the store beside its file's place first (see
/// `silo_backups`' moves). Anything without the cluster's secret gets 404, as outside a
/// cluster.
async fn prepare(req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if !from_peer(&req) {
        return HttpResponse::NotFound().finish();
    }
    let Ok(id) = id.parse::<TenantId>() else { return HttpResponse::NotFound().finish() };
    let tenancy = state(&req).tenancy();
    let tenant = match tenancy.tenant(&TenantRef::Id(id)).await {
        Ok(tenant) => tenant,
        Err(e) => return HttpResponse::NotFound().body(e.to_string()),
    };
    match silo_backups::Backups::of(tenancy).prepare(&tenant).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => {
            tracing::warn!(tenant = %id, error = %e, "preparing a tenant that moves here failed");
            HttpResponse::ServiceUnavailable().body(e.to_string())
        }
    }
}

/// `DELETE /cluster/v1/tenants/{id}/prepared`: the server purging a tenant asks this one to
/// remove its prepared copy (from a move that never switched). 204 when there was one, 200
/// when not; 404 to anything without the cluster's secret.
async fn forget(req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if !from_peer(&req) {
        return HttpResponse::NotFound().finish();
    }
    let Ok(id) = id.parse::<TenantId>() else { return HttpResponse::NotFound().finish() };
    // By id alone: the purged tenant's row may be gone by now.
    if silo_backups::Backups::of(state(&req).tenancy()).forget_prepared(id).await {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::Ok().finish()
    }
}

/// The tenant (slug or id) a path is about, if it is one whose requests go to the tenant's
/// server.
fn tenant_in_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/w/")
        .or_else(|| path.strip_prefix("/api/v1/w/"))
        .or_else(|| path.strip_prefix("/api/v1/tenants/"))
        .or_else(|| path.strip_prefix("/admin/tenants/"))?;
    rest.split('/').next().filter(|slug| !slug.is_empty())
}

/// The middleware: requests for a tenant owned by another server whose lease is current go
/// there; every other request is served here.
pub async fn forward(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(forwarder) = req.app_data::<Option<web::Data<Forwarder>>>().cloned().flatten() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // Forwarded by a server of the cluster: served here, as the client it came from.
    if let Some(origin) = forwarder.origin(req.request()) {
        req.extensions_mut().insert(origin);
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let owner = match owner_elsewhere(&req, &forwarder).await {
        Some(owner) => owner,
        None => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    let (http, payload) = req.into_parts();
    let response = relay(&http, payload, &owner, &forwarder).await;
    Ok(ServiceResponse::new(http, response))
}

/// The owner to forward `req` to, when it is another server.
async fn owner_elsewhere(req: &ServiceRequest, forwarder: &Forwarder) -> Option<Owner> {
    let slug = tenant_in_path(req.path())?;
    let tenancy = state(req.request()).tenancy();
    let ownership = tenancy.ownership()?;
    // Unknown, deleted or unreadable: the handler here answers it as it would.
    let tenant = match slug.parse::<TenantRef>().ok()? {
        TenantRef::Slug(slug) => tenancy.resolve(&slug).await.ok()?,
        id => tenancy.tenant(&id).await.ok()?,
    };
    if ownership.serves(tenant.id) {
        return None;
    }
    let owner = match forwarder.owners.get(&tenant.id) {
        Some(owner) => owner,
        None => {
            let owner = tenancy.live_owner(tenant.id).await.ok()?;
            forwarder.owners.insert(tenant.id, owner.clone());
            owner
        }
    };
    owner.filter(|o| o.node != ownership.node())
}

/// Sends the request to `owner` and streams its answer back; 503 when it cannot be reached.
async fn relay(
    http: &HttpRequest,
    mut payload: actix_web::dev::Payload,
    owner: &Owner,
    forwarder: &Forwarder,
) -> HttpResponse {
    // Refusals of the forwarding itself, in the form the path's own answers take.
    let refuse = |failure: Failure| {
        if http.path().starts_with("/api/") {
            ApiError(failure).error_response()
        } else {
            error_page(&failure)
        }
    };
    let unreachable = |why: String| {
        tracing::warn!(
            node = owner.node,
            advertise = owner.advertise,
            error = why,
            "forwarding to a tenant's server failed"
        );
        let message = format!(
            "The server that holds this workspace (node `{}`) cannot be reached; retry shortly.",
            owner.node
        );
        refuse(
            Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                .retry_after(Duration::from_secs(2)),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refuse(Failure::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "The request body was cut short.",
            ));
        };
        if body.len() + chunk.len() > BODY_LIMIT {
            let message = format!("The request body is larger than {} KiB.", BODY_LIMIT / 1024);
            return refuse(Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message));
        }
        body.extend_from_slice(&chunk);
    }
    let target = format!(
        "{}{}",
        owner.advertise.trim_end_matches('/'),
        http.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let Ok(method) = reqwest::Method::from_bytes(http.method().as_str().as_bytes()) else {
        return HttpResponse::MethodNotAllowed().finish();
    };
    let mut request = forwarder.client.request(method, target);
    for (name, value) in http.headers() {
        let name = name.as_str();
        if HOP_BY_HOP.contains(&name) || name.starts_with("x-silo-") {
            continue;
        }
        request = request.header(name, value.as_bytes());
    }
    let scheme = if super::request::is_secure(http) { "https" } else { "http" };
    let request = request
        .header(FORWARDED, forwarder.secret.expose())
        .header(CLIENT, super::request::client_addr(http))
        .header(SCHEME, scheme)
        .body(body.freeze());
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return unreachable(e.to_string()),
    };
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(answer.status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
    );
    for (name, value) in answer.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_str().as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
        {
            response.append_header((name, value));
        }
    }
    // An answer of known, bounded size goes back whole, in one write with its length: streamed
    // in chunks, its head and body would leave in separate small segments, which Nagle's
    // algorithm and the client's delayed ACK hold for ~40 ms (the forwarded p99 showed it).
    // Downloads (exports) stream.
    if answer.content_length().is_some_and(|len| len <= BODY_LIMIT as u64) {
        return match answer.bytes().await {
            Ok(bytes) => response.body(bytes),
            Err(e) => unreachable(e.to_string()),
        };
    }
    let chunks = futures::stream::unfold(answer, |mut answer| async move {
        match answer.chunk().await {
            Ok(Some(bytes)) => Some((Ok::<_, actix_web::Error>(bytes), answer)),
            Ok(None) => None,
            Err(e) => Some((Err(actix_web::error::ErrorBadGateway(e)), answer)),
        }
    });
    response.streaming(chunks)
}

#[cfg(test)]
mod tests {
    use super::tenant_in_path;

    #[test]
    fn the_tenant_of_a_path_is_found_where_tenants_are_served() {
        assert_eq!(tenant_in_path("/w/acme/"), Some("acme"));
        assert_eq!(tenant_in_path("/w/acme"), Some("acme"));
        assert_eq!(tenant_in_path("/api/v1/w/acme/tasks"), Some("acme"));
        assert_eq!(tenant_in_path("/api/v1/tenants/acme/backups"), Some("acme"));
        assert_eq!(
            tenant_in_path("/api/v1/tenants/acme"),
            Some("acme"),
            "a plan change, a purge: the tenant's server"
        );
        assert_eq!(tenant_in_path("/api/v1/tenants"), None);
        assert_eq!(tenant_in_path("/w/"), None);
        assert_eq!(tenant_in_path("/login"), None);
        assert_eq!(
            tenant_in_path("/admin/tenants/0190-ab/suspend"),
            Some("0190-ab"),
            "the console's tenant pages"
        );
        assert_eq!(tenant_in_path("/admin/tenants"), None);
    }
}
