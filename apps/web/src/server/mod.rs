//! The HTTP server: actix-web over the shared [`Tenancy`].
//!
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`pages`]: the HTML site (sign-up, account, workspaces, admin console).
//! - [`api`]: the JSON API under `/api/v1` and its OpenAPI document.
//!
//! Every response carries the security headers ([`security_headers`]); a workspace is also
//! reachable on `{slug}.{base_domain}` when a base domain is configured ([`host_workspace`]).

mod api;
pub mod auth;
pub mod error;
mod ops;
pub mod pages;
pub mod state;
mod templates;
pub mod tenant;

use std::net::TcpListener;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Uri;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use silo_tenancy::{Tenancy, TenantSlug};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use state::AppState;

/// Binds `bind` and serves until SIGINT/SIGTERM, then closes every tenant handle.
pub async fn serve(tenancy: Tenancy, bind: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %tenancy.settings().data_dir.display(), sqlite = tenancy.sqlite_version(), "silo listening");
    let smtp = &tenancy.settings().smtp;
    match silo_tenancy::outbox::Mailer::from_settings(smtp)? {
        Some(mailer) => {
            let every = std::time::Duration::from_secs(smtp.poll_seconds.max(1));
            tokio::spawn(tenancy.clone().run_mailer(mailer, every));
        }
        None => tracing::info!("no [smtp] host: emails stay in the outbox table (and the log)"),
    }
    // A store that cannot be reached or written is a start-up error, not a surprise at the
    // first backup (this also creates the master key file on the first start).
    tenancy.backups().await.context("backup store")?;
    if tenancy.settings().backup.schedule {
        let interval = tenancy.settings().backup.interval()?;
        tracing::info!(interval_s = interval.as_secs(), "backup scheduler started");
        tokio::spawn(tenancy.clone().run_backup_scheduler(interval));
    }
    start(tenancy, listener)?.await.context("server failed")
}

/// The content security policy: only our own stylesheet, no script at all, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Headers every response carries.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// The workspace slug of a `{slug}.{base_domain}` host, if the request came that way.
fn host_workspace(host: &str, base_domain: Option<&str>) -> Option<TenantSlug> {
    let base = base_domain?.trim_matches('.');
    let host = host.split(':').next()?.to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    TenantSlug::parse(label).ok()
}

/// Starts serving on an already bound listener (tests bind port 0); the returned server
/// runs until stopped.
pub fn start(tenancy: Tenancy, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(AppState::new(tenancy));
    let workers =
        state.web.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let server = HttpServer::new(move || {
        let base_domain = state.web.base_domain.clone();
        let (app, openapi) = App::new()
            .app_data(state.clone())
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .wrap_fn(|req, service| {
                // Forms shown before sign-in need a token cookie; set it on the response of
                // pages (the API, assets and probes have no forms).
                let new_cookie =
                    if auth::has_forms(req.path()) { auth::ensure_csrf_cookie(req.request()) } else { None };
                let response = service.call(req);
                async move {
                    let mut response: ServiceResponse = response.await?;
                    if let Some(cookie) = new_cookie
                        && let Ok(value) = HeaderValue::from_str(&cookie.to_string())
                    {
                        response.headers_mut().append(header::SET_COOKIE, value);
                    }
                    Ok(response)
                }
            })
            .wrap(security_headers())
            .wrap_fn(|req, service| {
                // One span per request; the route pattern and status are recorded when known,
                // the tenant by `tenant::enter`.
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    route = tracing::field::Empty,
                    tenant = tracing::field::Empty,
                    status = tracing::field::Empty,
                );
                let started = std::time::Instant::now();
                let response = tracing::Instrument::instrument(service.call(req), span.clone());
                async move {
                    let response: ServiceResponse = response.await?;
                    span.record("route", response.request().match_pattern().as_deref().unwrap_or("-"));
                    span.record("status", response.status().as_u16());
                    span.in_scope(|| {
                        tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "request done")
                    });
                    Ok(response)
                }
            })
            .wrap_fn(move |mut req, service| {
                // `{slug}.{base_domain}/x` is served as `/w/{slug}/x`.
                let host = auth::request_host(req.request());
                if let Some(slug) = host_workspace(&host, base_domain.as_deref())
                    && !req.path().starts_with("/static/")
                {
                    let path_and_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                    if let Ok(uri) = format!("/w/{slug}{path_and_query}").parse::<Uri>() {
                        req.match_info_mut().get_mut().update(&uri);
                        req.head_mut().uri = uri;
                    }
                }
                service.call(req)
            })
            .configure(ops::routes)
            .into_utoipa_app()
            .openapi(api::ApiDoc::openapi())
            .service(api::scope())
            .split_for_parts();
        let openapi = openapi.to_pretty_json().unwrap_or_default();
        app.app_data(web::Data::new(api::OpenApiJson(openapi)))
            .configure(pages::routes)
            .default_service(web::to(pages::not_found))
    })
    .workers(workers.max(1))
    .listen(listener)?
    .shutdown_timeout(10)
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_hosts_are_recognised() {
        let base = Some("silo.example.com");
        assert_eq!(host_workspace("acme.silo.example.com", base).unwrap().as_str(), "acme");
        assert_eq!(host_workspace("ACME.silo.example.com:8080", base).unwrap().as_str(), "acme");
        assert!(host_workspace("silo.example.com", base).is_none());
        assert!(host_workspace("a.b.silo.example.com", base).is_none());
        assert!(host_workspace("acme.evil.com", base).is_none());
        assert!(host_workspace("acme.silo.example.com", None).is_none());
        assert!(host_workspace("x.silo.example.com", base).is_none(), "not a valid slug");
    }
}
