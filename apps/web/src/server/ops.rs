//! Operational endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, get, web};
use silo_tenancy::Tenancy;

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
async fn readyz(tenancy: web::Data<Tenancy>) -> HttpResponse {
    match tenancy.control().ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("control plane unavailable\n")
        }
    }
}

/// Prometheus text format: the handle cache's counters and process facts.
#[get("/metrics")]
async fn metrics(tenancy: web::Data<Tenancy>) -> HttpResponse {
    let mut body = tenancy.cache().stats().to_prometheus();
    body.push_str("# HELP silo_build_info Silo build and SQLite versions.\n# TYPE silo_build_info gauge\n");
    body.push_str(&format!(
        "silo_build_info{{version=\"{}\",sqlite=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        tenancy.sqlite_version()
    ));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}
