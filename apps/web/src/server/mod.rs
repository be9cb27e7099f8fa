//! The HTTP server: actix-web over the shared [`Tenancy`].
//!
//! For now it serves the operational endpoints ([`ops`]): `/healthz`, `/readyz` and
//! `/metrics`.

mod ops;

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use silo_tenancy::Tenancy;

/// Binds `bind` and serves until SIGINT/SIGTERM, then closes every tenant handle.
pub async fn serve(tenancy: Tenancy, bind: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %tenancy.settings().data_dir.display(), sqlite = tenancy.sqlite_version(), "silo listening");
    start(tenancy, listener)?.await.context("server failed")
}

/// Starts serving on an already bound listener (tests bind port 0); the returned server
/// runs until stopped.
pub fn start(tenancy: Tenancy, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(tenancy);
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(ops::routes))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
    Ok(server)
}
