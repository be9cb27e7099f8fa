//! The operational endpoints of a running server.

use silo_e2e::{TestServer, http_get};
use silo_tenancy::CreateTenant;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await.unwrap();
    let addr = server.addr;
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/healthz")).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/readyz")).await.unwrap().unwrap();
    assert_eq!((status, body.lines().next()), (200, Some("ready")));
    // Free space running low is reported (this machine's real disk decides which).
    let low = server.tenancy.disk_space().unwrap().is_low();
    assert_eq!(body.contains("warning: disk space low"), low, "{body}");

    let tenant = server.tenancy.tenants().create(CreateTenant::with_slug("metered"), "test").await.unwrap();
    server.tenancy.db(tenant.id).await.unwrap();
    server.tenancy.db(tenant.id).await.unwrap();
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await.unwrap().unwrap();
    assert_eq!(status, 200);
    // The default capacity is automatic: what the descriptor limit and half the memory allow.
    let stats = server.tenancy.cache().stats();
    let (auto, _, _) =
        silo_tenancy::limits::auto_capacity(512, stats.fd_limit, silo_tenancy::limits::memory_limit());
    assert!(auto > 1, "{auto}");
    let capacity = format!("silo_cache_capacity {auto}");
    for line in [
        "silo_cache_opens_total 1",
        "silo_cache_hits_total 1",
        "silo_cache_misses_total 1",
        "silo_cache_cached_handles 1",
        "silo_cache_open_handles 1",
        &capacity,
        "silo_backup_last_pass_failed 0",
        "silo_backup_last_verify_failed 0",
        "silo_backup_continuous_tenants_behind 0",
        "silo_backup_continuous_lag_seconds 0",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in\n{body}");
    }
    assert!(body.contains("silo_process_open_fds "));
    // Memory: SQLite's bytes (one tenant open), its budget, the process's RSS.
    let gauge = |name: &str| -> u64 {
        let line =
            body.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert!(gauge("silo_sqlite_memory_bytes") > 0);
    assert!(gauge("silo_sqlite_memory_budget_bytes") >= silo_tenancy::limits::MEMORY_PER_SLOT_KIB * 1024);
    assert!(gauge("silo_process_resident_bytes") > gauge("silo_sqlite_memory_bytes"));
    assert!(gauge("silo_cache_sqlite_bytes_per_open_tenant") > 0);
    assert!(body.lines().any(|l| l.starts_with("silo_disk_available_bytes ")), "{body}");
    assert!(body.contains("silo_build_info{version="));

    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/nope")).await.unwrap().unwrap();
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_fails_when_the_control_plane_is_closed() {
    let server = TestServer::start().await.unwrap();
    let addr = server.addr;
    server.tenancy.control().close().await;
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/readyz")).await.unwrap().unwrap();
    assert_eq!(status, 503, "{body}");
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz")).await.unwrap().unwrap();
    assert_eq!(status, 200, "liveness does not depend on the control plane");
    server.stop().await.unwrap();
}
