//! The servers that use this control plane (the `nodes` table, migrations 0018–0020): each
//! `silo serve` registers under its node name (`[cluster] node`) when it starts, renews its
//! heartbeat while it runs, and leaves when it stops. One whose heartbeat is older than three
//! heartbeats is gone (a killed process leaves its row; it no longer counts).
//!
//! On PostgreSQL the heartbeat is also the server's lease on its tenants (`expires_ms`, on the
//! database's clock; see [`crate::ownership`]). Servers that share a `[cluster] secret` run as
//! a cluster, each serving the tenants it owns; without one a control plane has one server: a
//! second one, under another name, is refused while the first's heartbeat is fresh. Either
//! way a name belongs to one data directory (`<data_dir>/node-id`): another machine starting
//! under a name whose lease is current is refused. The same name on the same directory may
//! start again at once (a restart after a crash).

use std::time::Duration;

use serde::Serialize;
use silo_core::Timestamp;
use silo_core::db;

use crate::{Error, Result, Tenancy};

/// Heartbeats a server may miss before it is gone.
const MISSED: u32 = 3;

/// A row of `nodes` (what people see of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Node {
    /// Its name (`[cluster] node`).
    pub name: String,
    /// Where it is reached.
    pub advertise: String,
    /// When it started.
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub heartbeat_at: Timestamp,
    /// The tenants it owns, purged ones not counted (on `control.db`, the one server's: all).
    pub tenants: i64,
    /// Tenant files it had open at its last heartbeat.
    pub open_tenants: i64,
    /// Free bytes on its data directory's disk at its last heartbeat.
    pub free_bytes: i64,
    /// Bytes of the tenant files on its disk at its last heartbeat.
    pub tenant_bytes: i64,
}

/// The control plane's servers; see the module's documentation.
pub struct Nodes(pub(crate) Tenancy);

impl Nodes {
    /// How long after its last heartbeat a server is gone.
    fn expiry(&self) -> Duration {
        self.0.settings().cluster.heartbeat() * MISSED
    }

    /// Registers this server as `name` on the data directory `data_id`, reached at
    /// `advertise`, in a cluster of servers (`cluster`) or alone; see the module.
    pub async fn register(&self, name: &str, advertise: &str, data_id: &str, cluster: bool) -> Result<()> {
        let now = self.0.control().now();
        let mut tx = self.0.control().writer().begin().await?;
        let db_now = db::now_ms(&mut tx).await?;
        let twin: Option<Node> = db::query_as(
            "SELECT name, advertise, started_at, heartbeat_at, CAST(0 AS BIGINT) AS tenants, open_tenants, free_bytes, tenant_bytes FROM nodes
             WHERE name = ?1 AND data_id <> ?2 AND data_id <> '' AND expires_ms > ?3",
        )
        .bind(name)
        .bind(data_id)
        .bind(db_now)
        .fetch_optional(&mut tx)
        .await?;
        // `control.db` lives in the data directory: no other directory can share it (a
        // recovered copy carries the lost directory's row, which is this one's).
        if let Some(twin) = twin.filter(|_| !self.0.control().is_embedded()) {
            return Err(Error::Busy(format!(
                "node name `{name}` is in use by a server on another data directory ({}), its last heartbeat at {}; \
                 give each server its own `[cluster] node` (a replaced machine may take the name once that lease ran out)",
                twin.advertise, twin.heartbeat_at
            )));
        }
        let other: Option<Node> = db::query_as(
            "SELECT name, advertise, started_at, heartbeat_at, CAST(0 AS BIGINT) AS tenants, open_tenants, free_bytes, tenant_bytes FROM nodes
             WHERE name <> ?1 AND heartbeat_at > ?2 ORDER BY heartbeat_at DESC LIMIT 1",
        )
        .bind(name)
        .bind(now.minus(self.expiry()))
        .fetch_optional(&mut tx)
        .await?;
        if let Some(other) = other
            && !cluster
        {
            return Err(Error::Busy(format!(
                "another server uses this control plane: node `{}` ({}), its last heartbeat at {}; \
                 servers share a control plane only as a cluster (set the same `[cluster] secret` on each), \
                 otherwise give each server its own control plane, or stop that one first",
                other.name, other.advertise, other.heartbeat_at
            )));
        }
        db::query(
            "INSERT INTO nodes (name, advertise, started_at, heartbeat_at, expires_ms, data_id) VALUES (?1, ?2, ?3, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET advertise = excluded.advertise, started_at = excluded.started_at,
                 heartbeat_at = excluded.heartbeat_at, expires_ms = excluded.expires_ms, data_id = excluded.data_id",
        )
        .bind(name)
        .bind(advertise)
        .bind(&now)
        .bind(db_now + self.0.settings().cluster.lease().as_millis() as i64)
        .bind(data_id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        tracing::info!(node = name, advertise, cluster, "registered with the control plane");
        Ok(())
    }

    /// Renews `name`'s heartbeat.
    pub async fn heartbeat(&self, name: &str) -> Result<()> {
        let load = self.0.load().await;
        db::query(
            "UPDATE nodes SET heartbeat_at = ?2, open_tenants = ?3, free_bytes = ?4, tenant_bytes = ?5 WHERE name = ?1",
        )
        .bind(name)
        .bind(self.0.control().now())
        .bind(load.open_tenants as i64)
        .bind(load.free_bytes.min(i64::MAX as u64) as i64)
        .bind(load.tenant_bytes.min(i64::MAX as u64) as i64)
        .execute(self.0.control().writer())
            .await?;
        Ok(())
    }

    /// Removes `name` (it stopped).
    pub async fn leave(&self, name: &str) -> Result<()> {
        db::query("DELETE FROM nodes WHERE name = ?1").bind(name).execute(self.0.control().writer()).await?;
        Ok(())
    }

    /// Every server registered, with whether it is live (its heartbeat fresh), by name.
    pub async fn list(&self) -> Result<Vec<(Node, bool)>> {
        // On control.db one server has every tenant (no owners are recorded: see
        // `crate::ownership`).
        let tenants = if self.0.control().is_embedded() {
            "(SELECT count(*) FROM tenants t WHERE t.status <> 'deleted')"
        } else {
            "(SELECT count(*) FROM tenant_owners o JOIN tenants t ON t.id = o.tenant_id
              WHERE o.node = n.name AND t.status <> 'deleted')"
        };
        let nodes: Vec<Node> = db::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT n.name, n.advertise, n.started_at, n.heartbeat_at, n.open_tenants, n.free_bytes, n.tenant_bytes,
                    {tenants} AS tenants
             FROM nodes n ORDER BY n.name"
        )))
        .fetch_all(self.0.control().reader())
        .await?;
        let fresh_after = self.0.control().now().minus(self.expiry());
        Ok(nodes
            .into_iter()
            .map(|node| {
                let live = node.heartbeat_at > fresh_after;
                (node, live)
            })
            .collect())
    }

    /// Renews `name`'s heartbeat every `[cluster] heartbeat_seconds` until `stop`, then leaves.
    /// A heartbeat that fails (the control plane unreachable) is logged and tried again.
    pub async fn run(&self, name: &str, stop: impl std::future::Future<Output = ()>) {
        let every = self.0.settings().cluster.heartbeat();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut stop => break,
            }
            let renewed = match self.0.control().ownership() {
                Some(_) => self.0.renew_lease().await,
                None => self.heartbeat(name).await,
            };
            if let Err(e) = renewed {
                tracing::warn!(node = name, error = %e, "heartbeat to the control plane failed; retrying");
            }
        }
        // A server of a cluster keeps its row: its lease runs out after the stop has shipped
        // its last commits (so none is missed by a takeover), and a restart within the lease
        // keeps its tenants.
        if self.0.settings().cluster.secret().is_some() {
            return;
        }
        if let Err(e) = self.leave(name).await {
            tracing::warn!(node = name, error = %e, "leaving the control plane failed (the row expires)");
        }
    }
}

/// The data directory's identity (`<data_dir>/node-id`, made on first use): which directory a
/// server registered from.
pub fn data_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(silo_storage::Error::Io { action: "read", path, source: e }.into()),
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, format!("{id}\n")).map_err(|e| silo_storage::Error::Io {
        action: "write",
        path,
        source: e,
    })?;
    Ok(id)
}

impl Tenancy {
    /// Where the control plane lives, for people: `control.db` or `PostgreSQL`.
    pub fn control_plane_name(&self) -> &'static str {
        if self.control().is_embedded() { "control.db" } else { "PostgreSQL" }
    }

    /// The control plane's servers.
    pub fn nodes(&self) -> Nodes {
        Nodes(self.clone())
    }
}
