//! Operational endpoints: liveness, readiness, Prometheus metrics.
//!
//! `/metrics` tells about the fleet (tenant counts, cache and backup activity), so it is not for
//! anyone who can reach the port. Who may read it:
//! - with `server.metrics_bind`: requests to that listener only (the main one answers 404),
//!   and the listener answers nothing else;
//! - with `server.metrics_token`: requests with `Authorization: Bearer <token>`;
//! - otherwise (the default): direct requests from this machine (a loopback peer and no
//!   forwarding headers, so a local reverse proxy does not open it to the world).

use actix_web::dev::ServiceRequest;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use silo_backups::BackupsExt;

use super::client::is_direct_local;
use super::csrf::same_token;
use super::state::AppState;

/// Registers the endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// The process is up.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// Commits older than this not in the backup store yet make `/readyz` warn (still 200: the
/// server serves; what is late is its copy).
const LAG_WARNING: std::time::Duration = std::time::Duration::from_secs(30);

/// The process can serve: the control plane answers. Free disk space running low, and
/// continuous backup falling behind, are reported in the body (still ready: reads work, and
/// writes answer a clear error when full).
#[get("/readyz")]
async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    match app.tenancy().ping().await {
        Ok(()) => {
            let mut body = "ready\n".to_owned();
            if let Ok(space) = app.tenancy().disk_space()
                && space.is_low()
            {
                tracing::warn!(available = space.available, total = space.total, "disk space low");
                body.push_str(&format!(
                    "warning: disk space low: {} MB free of {} MB\n",
                    space.available / 1_000_000,
                    space.total / 1_000_000
                ));
            }
            let lag = app.tenancy().backups().logs().lag();
            if lag.oldest_unshipped_ms >= LAG_WARNING.as_millis() as u64 {
                body.push_str(&format!(
                    "warning: continuous backup is {:.0} s behind: {} tenants, {} KB not in the backup store\n",
                    lag.oldest_unshipped_ms as f64 / 1000.0,
                    lag.tenants_behind,
                    lag.unshipped_bytes / 1000
                ));
            }
            let control_behind = app.tenancy().backups().control_copies().behind_seconds();
            if control_behind >= LAG_WARNING.as_secs_f64() {
                body.push_str(&format!(
                    "warning: the control plane's changes of the last {control_behind:.0} s are not in the backup store\n"
                ));
            }
            HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(body)
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("control plane unavailable\n")
        }
    }
}

/// Prometheus text format: the handle cache's counters, the backup scheduler's last pass and
/// process facts.
#[get("/metrics")]
async fn metrics(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = metrics_refusal(&req, &app) {
        return refusal;
    }
    let mut body = app.tenancy().cache().stats().to_prometheus();
    body.push_str(&app.tenancy().backups().scheduler_status().to_prometheus());
    body.push_str(&app.tenancy().backups().logs().lag().to_prometheus());
    body.push_str(&app.tenancy().backups().control_copies().to_prometheus());
    if let Some(ownership) = app.tenancy().ownership() {
        body.push_str(&ownership.to_prometheus());
    }
    if let Ok(space) = app.tenancy().disk_space() {
        body.push_str("# HELP silo_disk_available_bytes Free bytes on the data directory's file system.\n# TYPE silo_disk_available_bytes gauge\n");
        body.push_str(&format!("silo_disk_available_bytes {}\n", space.available));
    }
    body.push_str("# HELP silo_log_lines_lost_total Log lines dropped because stderr could not take them (a full disk).\n# TYPE silo_log_lines_lost_total counter\n");
    body.push_str(&format!("silo_log_lines_lost_total {}\n", crate::logging::lost_lines()));
    body.push_str("# HELP silo_build_info Silo build and SQLite versions.\n# TYPE silo_build_info gauge\n");
    body.push_str(&format!(
        "silo_build_info{{version=\"{}\",sqlite=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        app.tenancy().sqlite_version()
    ));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

/// Why `/metrics` is not served to this request, as the response to give.
fn metrics_refusal(req: &HttpRequest, app: &AppState) -> Option<HttpResponse> {
    let on_metrics_listener = app.metrics_addr.is_some_and(|addr| req.app_config().local_addr() == addr);
    if app.metrics_addr.is_some() && !on_metrics_listener {
        return Some(HttpResponse::NotFound().finish());
    }
    match &app.web.metrics_token {
        Some(token) => {
            let sent = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .trim();
            (!same_token(sent, token.expose())).then(|| {
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\""))
                    .finish()
            })
        }
        None if on_metrics_listener || is_direct_local(req) => None,
        None => Some(HttpResponse::NotFound().finish()),
    }
}

/// The metrics listener (`server.metrics_bind`) answers `/metrics` and nothing else.
pub fn metrics_listener_gate(req: &ServiceRequest) -> Option<HttpResponse> {
    let app = req.app_data::<web::Data<AppState>>()?;
    let addr = app.metrics_addr?;
    (req.request().app_config().local_addr() == addr && req.path() != "/metrics")
        .then(|| HttpResponse::NotFound().finish())
}
