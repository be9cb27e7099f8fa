//! Moves: to another region (`silo tenant move SLUG --region R`), or to another server of the
//! cluster (`--node N`).
//!
//! **Region moves.**
//!
//! 1. A `pre-move` backup while the tenant serves (the way back if anything goes wrong later).
//! 2. Lease: in-flight requests finish, new ones get `503` until the move ends.
//! 3. Checkpoint the WAL into the main file, copy that file into the new region's root,
//!    fsync, check that the copy's SHA-256 equals the original's.
//! 4. Switch the region in the control plane (with an audit entry).
//! 5. Release the lease, then remove the old files.
//!
//! The tenant is unavailable only for steps 2–4; a failure before step 4 removes the copy and
//! leaves the tenant where it was.
//!
//! **Moves to another server** (run by the tenant's server: the API and the console forward
//! them there). The store carries the file; continuous backup must run.
//! 1. A `pre-move` backup while the tenant serves (it starts a chain).
//! 2. The new server *prepares* the tenant (asked over HTTP, `silo_tenancy::peers`): it
//!    restores that backup and its chain so far beside the file's place, while the tenant
//!    still serves here.
//! 3. Lease: in-flight requests finish, new ones get `503`; the handle's last commits are
//!    shipped to the chain.
//! 4. The tenant is handed over in the control plane (the next fence; see
//!    `silo_tenancy::ownership`), with an audit entry.
//! 5. Release the lease, remove the files here. Requests forwarded from here reach the new
//!    server, which on the first of them (or its next heartbeat) replays the commits since
//!    step 2 onto the prepared file and serves it — or restores the whole tenant from the
//!    store when it did not prepare it.
//!
//! A failure before step 4 leaves the tenant where it was.

use std::time::{Duration, Instant};

use serde::Serialize;
use silo_storage::sqlite;

use crate::{Backup, BackupKind, Backups, Error, Result};
use silo_core::ids::TenantRef;
use silo_tenancy::{Tenant, TenantStatus};

/// What a move did.
#[derive(Debug, Serialize)]
pub struct Moved {
    /// The tenant, now in its new region.
    pub tenant: Tenant,
    /// The region it left.
    pub from: silo_storage::RegionName,
    /// The backup taken before the move.
    pub backup: Backup,
    /// Bytes copied.
    pub bytes: u64,
    /// How long the tenant was unavailable (lease held), ms.
    pub unavailable_ms: f64,
}

/// Moves of a tenant between regions (from [`Backups::relocations`]).
#[derive(Clone)]
pub struct Relocations(pub(crate) Backups);

impl Relocations {
    /// Moves a tenant's file to another region.
    #[tracing::instrument(name = "tenant_move", skip_all, fields(tenant = %tenant, region))]
    pub async fn relocate(&self, tenant: &TenantRef, region: &str, actor: &str) -> Result<Moved> {
        let tenant = self.0.fleet().tenant(tenant).await?;
        if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
            let status = tenant.status.to_string();
            return Err(Error::InvalidTransition { tenant: tenant.slug.to_string(), action: "move", status });
        }
        if tenant.region.as_str() == region {
            return Err(Error::invalid(
                "region",
                format!("tenant `{}` is already in region `{region}`", tenant.slug),
            ));
        }
        let from_path = self.0.fleet().tenant_path(&tenant)?;
        let to_path = self.0.fleet().placement().database_path(region, tenant.id.as_uuid())?;
        let backup = self.0.backup_known(&tenant, BackupKind::PreMove, actor).await?;

        let lease = self.0.fleet().cache().lease(tenant.id).await?;
        let started = Instant::now();
        let tuning = self.0.fleet().settings().tenant_tuning();
        let (source, dest) = (from_path.clone(), to_path.clone());
        let copied = tokio::task::spawn_blocking(move || sqlite::copy_quiescent(&source, &dest, tuning))
            .await
            .expect("a move task panicked");
        let bytes = copied?;
        let detail = serde_json::json!({
            "slug": tenant.slug, "from": tenant.region, "to": region, "bytes": bytes, "backup": backup.id,
        });
        if let Err(e) = self.0.fleet().control().set_region(tenant.id, region, actor, &detail).await {
            let _ = sqlite::remove_database_files(&to_path).await;
            return Err(e);
        }
        self.0.fleet().forget_tenants();
        let unavailable = started.elapsed();
        drop(lease);
        if let Err(e) = sqlite::remove_database_files(&from_path).await {
            // The tenant is already served from its new region; a leftover is only disk space.
            tracing::error!(path = %from_path.display(), error = %e, "removing the old files of a moved tenant failed");
        }
        tracing::info!(from = %tenant.region, to = region, bytes, unavailable_ms = unavailable.as_millis() as u64, "tenant moved");
        let from = tenant.region.clone();
        let tenant = self.0.fleet().control().tenant_by_id(tenant.id).await?;
        Ok(Moved { tenant, from, backup, bytes, unavailable_ms: millis(unavailable) })
    }
}

/// What a move to another server did.
#[derive(Debug, Serialize)]
pub struct Handed {
    /// The tenant.
    pub tenant: Tenant,
    /// The server it left.
    pub from: String,
    /// The server it is on now.
    pub to: String,
    /// The backup taken before the move (its chain carries the last commits).
    pub backup: Backup,
    /// Commits shipped after the backup, under the lease.
    pub commits_shipped: usize,
    /// Whether the new server prepared the tenant before the switch (else it restores the
    /// whole tenant at its first request).
    pub prepared: bool,
    /// How long the tenant was unavailable here (lease held), ms; the new server serves it
    /// from its first request, once it has replayed the commits shipped meanwhile (or
    /// restored it whole, unprepared).
    pub unavailable_ms: f64,
}

impl Relocations {
    /// Moves a tenant this server serves to the server `node` of the cluster.
    #[tracing::instrument(name = "tenant_move_node", skip_all, fields(tenant = %tenant, node))]
    pub async fn to_node(&self, tenant: &TenantRef, node: &str, actor: &str) -> Result<Handed> {
        let fleet = self.0.fleet();
        let Some(ownership) = fleet.ownership() else {
            return Err(Error::invalid(
                "node",
                "tenants move between servers only in a cluster (servers sharing a PostgreSQL control plane and a `[cluster] secret`)",
            ));
        };
        let tenant = fleet.tenant(tenant).await?;
        if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
            let status = tenant.status.to_string();
            return Err(Error::InvalidTransition { tenant: tenant.slug.to_string(), action: "move", status });
        }
        let here = ownership.node().to_owned();
        // Run by the tenant's server only: elsewhere this one cannot say where the tenant is.
        fleet.here_or_elsewhere(&tenant).await?;
        if node == here {
            return Err(Error::invalid(
                "node",
                format!("tenant `{}` is already on node `{node}`", tenant.slug),
            ));
        }
        let live = fleet.nodes().list().await?.into_iter().any(|(n, live)| n.name == node && live);
        if !live {
            return Err(Error::invalid("node", format!("no live server `{node}` in this cluster")));
        }
        if !self.0.logs().is_enabled() {
            return Err(Error::invalid(
                "node",
                "a move between servers carries the tenant's last commits through continuous backup, which is off here",
            ));
        }
        let backup = self.0.backup_known(&tenant, BackupKind::PreMove, actor).await?;
        self.hand(tenant, &here, node, backup, actor).await
    }

    /// A tenant just provisioned here goes to the live server with the most room
    /// (`silo_tenancy::room`) when that is another one; `backup`, its first, is in the store
    /// already. Returns the server it went to, if it went.
    pub(crate) async fn place_new(&self, tenant: &Tenant, backup: Backup) -> Result<Option<String>> {
        let fleet = self.0.fleet();
        let Some(ownership) = fleet.ownership() else { return Ok(None) };
        if !self.0.logs().is_enabled() {
            return Ok(None);
        }
        let here = ownership.node().to_owned();
        let size =
            fleet.tenant_path(tenant).ok().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
        let rooms = fleet.rooms().await?.leaving(&here, size as i64);
        match rooms.most_room() {
            Some(node) if node != here => {
                let handed = self.hand(tenant.clone(), &here, node, backup, "placement").await?;
                Ok(Some(handed.to))
            }
            _ => Ok(None),
        }
    }

    /// Steps 2–5 of a move to another server, `backup` taken (step 1).
    async fn hand(
        &self,
        tenant: Tenant,
        here: &str,
        node: &str,
        backup: Backup,
        actor: &str,
    ) -> Result<Handed> {
        let fleet = self.0.fleet();
        let Some(ownership) = fleet.ownership() else {
            return Err(Error::invalid("node", "tenants move between servers only in a cluster"));
        };
        let prepared = self.prepare_on(&tenant, node).await;
        let lease = fleet.cache().lease(tenant.id).await?;
        let started = Instant::now();
        // Closed under the lease: its last commits were handed to the log; they go now.
        let shipped = self.0.ship(tenant.id).await?;
        ownership.hand_over(fleet.control(), &tenant, node).await?;
        let detail = serde_json::json!({
            "slug": tenant.slug, "from_node": here, "to_node": node, "backup": backup.id,
        });
        // Moved whatever the audit log says: the files here are stale from now on.
        if let Err(e) = fleet.control().record_audit(tenant.id, actor, "tenant.move_node", &detail).await {
            tracing::error!(error = %e, "recording a move to another server in the audit log failed");
        }
        let unavailable = started.elapsed();
        let path = fleet.tenant_path(&tenant)?;
        if let Err(e) = sqlite::remove_database_files(&path).await {
            // Never trusted again: a return of the tenant restores it from the store.
            ownership.mark_stale(tenant.id);
            tracing::error!(path = %path.display(), error = %e, "removing the files of a tenant moved to another server failed");
        }
        drop(lease);
        self.0.logs().forget(tenant.id);
        tracing::info!(
            from = here,
            to = node,
            prepared,
            commits = shipped.commits,
            unavailable_ms = unavailable.as_millis() as u64,
            "tenant moved to another server"
        );
        Ok(Handed {
            tenant,
            from: here.to_owned(),
            to: node.to_owned(),
            backup,
            commits_shipped: shipped.commits,
            prepared,
            unavailable_ms: millis(unavailable),
        })
    }

    /// Step 2 of a move to another server: asks `node` to prepare `tenant` (restore it from
    /// the store while it still serves here). Whether it did: when it did not (an older
    /// server, or it failed), it restores the whole tenant at the switch instead.
    async fn prepare_on(&self, tenant: &Tenant, node: &str) -> bool {
        let fleet = self.0.fleet();
        let Some(peers) = fleet.peers() else { return false };
        let advertise = match fleet.nodes().list().await {
            Ok(nodes) => nodes.into_iter().find(|(n, _)| n.name == node).map(|(n, _)| n.advertise),
            Err(_) => None,
        };
        let Some(advertise) = advertise else { return false };
        match peers.prepare(&advertise, tenant.id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, node, error = %e, "the server a tenant moves to did not prepare it: it restores it whole at the switch");
                false
            }
        }
    }
}

/// What a rebalance did on this server.
#[derive(Debug, Default, Serialize)]
pub struct Rebalanced {
    /// Tenants each live server owned before, by name.
    pub before: Vec<(String, i64)>,
    /// The most tenants a server should own: the live servers' tenants shared out.
    pub fair_share: i64,
    /// Tenants moved (slug, to node, unavailable ms).
    pub moved: Vec<(String, String, f64)>,
    /// Tenants that could not be moved (slug, why).
    pub failed: Vec<(String, String)>,
}

impl Relocations {
    /// Moves this server's tenants beyond its fair share (the live servers' tenants shared out
    /// evenly, rounded up), smallest files first, each to the live server with the most room
    /// (`silo_tenancy::room`). Each server moves only its own: run it on every server (or on
    /// the fullest) to even the cluster out.
    pub async fn rebalance(&self, actor: &str) -> Result<Rebalanced> {
        let fleet = self.0.fleet();
        let Some(ownership) = fleet.ownership() else {
            return Err(Error::invalid("node", "only the servers of a cluster rebalance their tenants"));
        };
        let here = ownership.node().to_owned();
        let counts: Vec<(String, i64)> = fleet
            .nodes()
            .list()
            .await?
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(node, _)| (node.name, node.tenants))
            .collect();
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        let servers = counts.len().max(1) as i64;
        let fair_share = (total + servers - 1) / servers;
        let mut run = Rebalanced { before: counts.clone(), fair_share, ..Rebalanced::default() };
        let mine = counts.iter().find(|(n, _)| *n == here).map_or(0, |(_, c)| *c);
        let excess = (mine - fair_share).max(0) as usize;
        if excess == 0 {
            return Ok(run);
        }
        let mut tenants = Vec::new();
        for id in ownership.held() {
            let tenant = fleet.control().tenant_by_id(id).await?;
            if matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
                let size = fleet
                    .tenant_path(&tenant)
                    .ok()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                tenants.push((size, tenant));
            }
        }
        tenants.sort_by_key(|(size, t)| (*size, t.slug.to_string()));
        tenants.truncate(excess);
        let sizes: Vec<i64> = tenants.iter().map(|(size, _)| (*size).min(i64::MAX as u64) as i64).collect();
        let targets = fleet.rooms().await?.without(&[&here]).share_out(&sizes);
        for ((_, tenant), target) in tenants.into_iter().zip(targets) {
            match self.to_node(&TenantRef::Id(tenant.id), &target, actor).await {
                Ok(moved) => run.moved.push((tenant.slug.to_string(), moved.to, moved.unavailable_ms)),
                Err(e) => run.failed.push((tenant.slug.to_string(), e.to_string())),
            }
        }
        Ok(run)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
