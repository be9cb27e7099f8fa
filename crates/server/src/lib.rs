//! `silo-server`: the HTTP server — actix-web + tera over the shared [`silo_billing::Billing`]
//! (the accounts and their fleet beneath it): the workspace pages, the console, the JSON API
//! and its OpenAPI document, sessions, CSRF, probes. Started ([`start`]) by the application
//! (`silo-web`'s `Application`), with its `[server]` [`ServerSettings`].
//!
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`pages`]: the HTML site (sign-up, account, workspaces, admin console).
//! - [`api`]: the JSON API under `/api/v1` and its OpenAPI document.
//!
//! - [`downloads`]: export zips streamed from disk, bounded per link and per client.
//! - [`devices`]: the known-device cookie that spares an account's owner the password
//!   throttle's delay.
//! - [`sessions`]: the session cookie and the signed-in extractors; [`csrf`]: the form check;
//!   [`redirects`]: redirects, `next=` and flash messages; [`request`]: a request's state,
//!   client address and scheme (with [`client`]'s proxy rules); [`links`]: every URL Silo
//!   builds (from configuration only); [`hosts`]: workspaces on their own host, and
//!   [`handoff`] of a session to them.
//!
//! - [`cluster`]: requests for a tenant another server of the cluster owns, forwarded there.
//!
//! - [`when`]: times as people read them (the templates' `when` and `day`); `agent`: a browser's
//!   `User-Agent` in words.
//! - [`settings`]: `[server]`; [`logging`]: the process's log output (the lines it could not
//!   write are counted on `/metrics`).
//!
//! Every response carries the security headers ([`security_headers`]).

mod agent;
mod api;
pub mod client;
pub mod cluster;
pub mod csrf;
pub mod devices;
pub mod downloads;
pub mod error;
mod handoff;
pub mod hosts;
pub mod links;
pub mod logging;
mod ops;
pub mod pages;
pub mod redirects;
pub mod request;
pub mod sessions;
pub mod settings;
pub mod state;
mod templates;
pub mod tenant;
pub mod when;

use std::net::TcpListener;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

pub use settings::{ServerSettings, TrustedProxies};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use state::AppState;

/// The content security policy: only our own stylesheet, no script at all, no framing. Forms
/// may post to this origin — and, with workspace hosts, to the main host and the workspace
/// hosts, since a form's redirects count too (sign-in on the main host ends on a workspace
/// host; signing out there ends on the main host).
fn content_security_policy(links: &links::Links) -> String {
    let form_action = match links.workspace_wildcard() {
        Some(workspaces) => format!("'self' {} {workspaces}", links.origin()),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Headers every response carries.
fn security_headers(csp: &str) -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, csp.to_owned()))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// Starts serving on an already bound listener (tests bind port 0), and on `server.metrics_bind`
/// when set; the returned server runs until stopped.
pub fn start(
    billing: silo_billing::Billing,
    web_settings: ServerSettings,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    let links = links::Links::resolve(
        web_settings.public_url.as_deref(),
        web_settings.base_domain.as_deref(),
        listener.local_addr()?,
    )?;
    let metrics_listener = match web_settings.metrics_bind.as_deref() {
        Some(bind) => Some(
            TcpListener::bind(bind)
                .with_context(|| format!("server.metrics_bind: cannot listen on {bind}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    if let Some(addr) = metrics_addr {
        tracing::info!(%addr, "metrics listening");
    }
    let csp = content_security_policy(&links);
    let forwarder = match billing.tenancy().settings().cluster.secret() {
        Some(secret) => Some(web::Data::new(cluster::Forwarder::new(secret.clone())?)),
        None => None,
    };
    if let Some(forwarder) = &forwarder {
        billing.tenancy().set_peers(forwarder.clone().into_inner());
    }
    let state = web::Data::new(AppState::new(billing, web_settings, links, metrics_addr)?);
    let workers =
        state.web.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let choices = api::Choices {
        plans: state.billing.plans().names().map(str::to_owned).collect(),
        regions: state.tenancy().placement().names(),
    };
    let server = HttpServer::new(move || {
        let csp = csp.clone();
        let (app, openapi) = App::new()
            .app_data(state.clone())
            // `Option<Data<Forwarder>>`: `None` outside a cluster (see `cluster::forward`).
            .app_data(forwarder.clone())
            // Forms are read whole by the CSRF extractor (`web::Bytes`, bounded by the payload
            // config, not the form config): both at 64 KiB. The API's JSON has its own limit.
            .app_data(web::FormConfig::default().limit(csrf::FORM_LIMIT))
            .app_data(web::PayloadConfig::new(csrf::FORM_LIMIT))
            // A page address with an id that is not a number names nothing (the API's scope
            // answers its own JSON); a query parameter that cannot be read is said in words.
            .app_data(
                web::PathConfig::default()
                    .error_handler(|_, _| error::PageError(error::Failure::not_found()).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|_, _| {
                let failure = error::Failure::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "bad_query",
                    "This address has a parameter Silo cannot read: check the link.",
                );
                error::PageError(failure).into()
            }))
            .wrap_fn(|req, service| {
                // Innermost: error pages get the signed-in header before the cookies and
                // security headers are added to them.
                let response = service.call(req);
                async move { pages::signed_in_errors(response.await?).await }
            })
            .wrap_fn(|req, service| {
                // Forms shown before sign-in need a token cookie; set it on the response of
                // pages (the API, assets and probes have no forms).
                let new_cookie =
                    if csrf::has_forms(req.path()) { csrf::ensure_csrf_cookie(req.request()) } else { None };
                let response = service.call(req);
                async move {
                    let mut response: ServiceResponse = response.await?;
                    redirects::secure_message_cookies(&mut response);
                    if let Some(cookie) = new_cookie
                        && let Ok(value) = HeaderValue::from_str(&cookie.to_string())
                    {
                        response.headers_mut().append(header::SET_COOKIE, value);
                    }
                    Ok(response)
                }
            })
            .wrap(security_headers(&csp))
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
            // Requests for tenants other servers of the cluster own go there (after a workspace
            // host's path is rewritten into its workspace). Outside a cluster the layer is not
            // in the request's path at all.
            .wrap(actix_web::middleware::Condition::new(
                forwarder.is_some(),
                actix_web::middleware::from_fn(cluster::forward),
            ))
            .wrap_fn(|mut req, service| {
                // The metrics listener serves `/metrics` only; workspace hosts are rewritten
                // into their workspace or sent to the main host (see `hosts`).
                let answered = ops::metrics_listener_gate(&req).or_else(|| hosts::dispatch(&mut req));
                let call = match answered {
                    Some(response) => Err(req.into_response(response)),
                    None => Ok(service.call(req)),
                };
                async move {
                    match call {
                        Err(response) => Ok(response),
                        Ok(call) => Ok(call.await?.map_into_boxed_body()),
                    }
                }
            })
            .configure(ops::routes)
            .configure(cluster::routes)
            .into_utoipa_app()
            .openapi(api::ApiDoc::openapi())
            .service(api::scope())
            .split_for_parts();
        let openapi = api::document(&openapi, &choices);
        app.app_data(web::Data::new(api::Routes::of(&openapi)))
            .app_data(web::Data::new(api::OpenApiJson(openapi)))
            .configure(handoff::routes)
            .configure(pages::routes)
            .default_service(web::to(pages::not_found))
    })
    .workers(workers.max(1))
    .listen(listener)?;
    let server = match metrics_listener {
        Some(metrics) => server.listen(metrics)?,
        None => server,
    };
    Ok(server.shutdown_timeout(10).run())
}
