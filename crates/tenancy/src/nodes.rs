//! The servers that use this control plane (the `nodes` table, migration 0018): each
//! `silo serve` registers under its node name (`[cluster] node`) when it starts, renews its
//! heartbeat while it runs, and leaves when it stops. One whose heartbeat is older than three
//! heartbeats is gone (a killed process leaves its row; it no longer counts).
//!
//! Until Silo runs several nodes, a control plane has one server: a second one, under another
//! name, is refused while the first's heartbeat is fresh. On `control.db` the data
//! directory's lock refuses it first; on PostgreSQL, servers on different machines could
//! share the control plane but not the tenants' files, and this is what stops them. The same
//! name may start again at once (a restart after a crash).

use std::time::Duration;

use serde::Serialize;
use silo_core::Timestamp;
use silo_core::db;

use crate::{Error, Result, Tenancy};

/// Heartbeats a server may miss before it is gone.
const MISSED: u32 = 3;

/// A row of `nodes`.
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
}

/// The control plane's servers; see the module's documentation.
pub struct Nodes(pub(crate) Tenancy);

impl Nodes {
    /// How long after its last heartbeat a server is gone.
    fn expiry(&self) -> Duration {
        self.0.settings().cluster.heartbeat() * MISSED
    }

    /// Registers this server as `name`, reached at `advertise`; refused while another
    /// server's heartbeat is fresh.
    pub async fn register(&self, name: &str, advertise: &str) -> Result<()> {
        let now = self.0.control().now();
        let mut tx = self.0.control().writer().begin().await?;
        let other: Option<Node> = db::query_as(
            "SELECT * FROM nodes WHERE name <> ?1 AND heartbeat_at > ?2 ORDER BY heartbeat_at DESC LIMIT 1",
        )
        .bind(name)
        .bind(now.minus(self.expiry()))
        .fetch_optional(&mut tx)
        .await?;
        if let Some(other) = other {
            return Err(Error::Busy(format!(
                "another server uses this control plane: node `{}` ({}), its last heartbeat at {}; \
                 one server per control plane until Silo runs as a cluster (give each server its own \
                 control plane, or stop that one first)",
                other.name, other.advertise, other.heartbeat_at
            )));
        }
        db::query(
            "INSERT INTO nodes (name, advertise, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET advertise = excluded.advertise, started_at = excluded.started_at,
                 heartbeat_at = excluded.heartbeat_at",
        )
        .bind(name)
        .bind(advertise)
        .bind(&now)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        tracing::info!(node = name, advertise, "registered with the control plane");
        Ok(())
    }

    /// Renews `name`'s heartbeat.
    pub async fn heartbeat(&self, name: &str) -> Result<()> {
        db::query("UPDATE nodes SET heartbeat_at = ?2 WHERE name = ?1")
            .bind(name)
            .bind(self.0.control().now())
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
        let nodes: Vec<Node> =
            db::query_as("SELECT * FROM nodes ORDER BY name").fetch_all(self.0.control().reader()).await?;
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
            if let Err(e) = self.heartbeat(name).await {
                tracing::warn!(node = name, error = %e, "heartbeat to the control plane failed; retrying");
            }
        }
        if let Err(e) = self.leave(name).await {
            tracing::warn!(node = name, error = %e, "leaving the control plane failed (the row expires)");
        }
    }
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
