//! Operational endpoints: liveness, readiness, Prometheus metrics.

use super::state::AppState;
use actix_web::{HttpResponse, get, web};

/// Registers the endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// The process is up.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// The process can serve: the control plane answers.
#[get("/readyz")]
async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    match app.tenancy.control().ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready\n"),
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
async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    let mut body = app.tenancy.cache().stats().to_prometheus();
    body.push_str(&app.tenancy.scheduler_status().to_prometheus());
    body.push_str("# HELP silo_build_info Silo build and SQLite versions.\n# TYPE silo_build_info gauge\n");
    body.push_str(&format!(
        "silo_build_info{{version=\"{}\",sqlite=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        app.tenancy.sqlite_version()
    ));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}
