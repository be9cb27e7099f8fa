//! [`TenantDb`]: an open tenant database — a small set of dedicated SQLite connections.
//!
//! Each connection is held by a `tokio::sync::Mutex`, so a request takes one for the duration
//! of its statements. A dedicated `SqliteConnection` is several microseconds cheaper per query
//! than sqlx's `SqlitePool` (see `silo-bench cache`), and a tenant rarely needs more than one
//! or two. When the last holder drops the handle, its connections are closed on the runtime
//! and only then is the registry told, so a waiting lease knows the file is really closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

use super::registry::Registry;
use crate::ids::TenantId;

/// An open tenant database, shared through the handle cache.
pub struct TenantDb {
    id: TenantId,
    connections: Vec<Mutex<SqliteConnection>>,
    next: AtomicUsize,
    retired: AtomicBool,
    schema_version: i64,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("id", &self.id)
            .field("connections", &self.connections.len())
            .finish()
    }
}

impl TenantDb {
    pub(crate) fn new(
        id: TenantId,
        connections: Vec<SqliteConnection>,
        schema_version: i64,
        registry: Arc<Registry>,
    ) -> Self {
        assert!(
            !connections.is_empty(),
            "a tenant handle needs a connection"
        );
        Self {
            id,
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            schema_version,
            registry,
        }
    }

    /// The tenant.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// The file's schema version when it was opened.
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    pub(crate) fn set_schema_version(&mut self, version: i64) {
        self.schema_version = version;
    }

    /// Takes a connection: a free one if any, else waits for one (round robin).
    pub(crate) async fn connection(&self) -> MutexGuard<'_, SqliteConnection> {
        for conn in &self.connections {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].lock().await
    }

    /// Whether the handle was retired (suspension, deletion, lease): callers must reopen.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for TenantDb {
    fn drop(&mut self) {
        let connections = std::mem::take(&mut self.connections);
        let registry = self.registry.clone();
        let id = self.id;
        let close = async move {
            for conn in connections {
                if let Err(e) = conn.into_inner().close().await {
                    tracing::warn!(tenant = %id, error = %e, "closing a tenant connection failed");
                }
            }
            registry.closed(id);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(close);
            }
            // Outside a runtime (process exit): the driver closes the connection when its
            // worker thread sees the channel dropped.
            Err(_) => futures::executor::block_on(close),
        }
    }
}
