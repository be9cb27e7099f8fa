//! Which server serves each tenant, when servers share a PostgreSQL control plane: the
//! `tenant_owners` table (migration 0019) and this server's lease.
//!
//! **The rules.**
//! - A tenant has one owner (`tenant_owners.node`); only the owner opens its file. A new tenant
//!   belongs to the server that provisioned it (in the transaction that inserts it).
//! - A server's lease is its row in `nodes`: `expires_ms`, on the database's clock, renewed
//!   with every heartbeat ([`Ownership::renew`], one statement for all its tenants). Once it has
//!   passed, another server may take the server's tenants over — one at a time, when it is
//!   asked for one: it locks the owner's `nodes` row, checks the lease again, moves the tenant
//!   to itself with `fence + 1`, and restores the file from the store (the registered
//!   [`crate::Copies`]: the newest snapshot and its continuous chain).
//! - A server writes its tenants only until `sent + 4/5 × lease` on its own monotonic clock,
//!   where `sent` is when it sent its last successful renewal: the renewal's expiry was computed
//!   later than that on the database's clock, so the server stops writing (every statement on a
//!   tenant connection checks the deadline, `TenantDb::call`) a fifth of the lease before anyone
//!   else may start. That fifth covers a statement already running at the deadline and clocks
//!   that run at slightly different rates. A server cut off from PostgreSQL therefore refuses
//!   its tenants (503) before they can be taken over, and serves them again once a renewal
//!   succeeds — unless they were taken meanwhile: each renewal reads back the tenants the
//!   server still owns, and those it lost are retired and their local files removed (the new
//!   owner's copy is the tenant now).
//! - The `fence` grows with every new owner, so a server whose remembered number differs from
//!   the row's lost the tenant in between, even if it is the owner again.
//!
//! Only `silo serve` on PostgreSQL owns tenants ([`crate::Tenancy::own`]); on `control.db` one
//! process owns the whole data directory (its lock) and none of this runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use silo_core::TenantId;
use silo_core::db;

use crate::{ControlPlane, Error, Result, Tenancy, Tenant};

/// Where this server's monotonic milliseconds count from.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Milliseconds on this process's monotonic clock.
fn mono_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Until when (this process's monotonic ms) the server may write its tenants' files; shared
/// with every open handle (`TenantDb::call` checks it before each statement).
#[derive(Debug, Default)]
pub struct Deadline(AtomicU64);

impl Deadline {
    /// Whether the lease still covers now.
    pub fn holds(&self) -> bool {
        mono_ms() < self.0.load(Ordering::Acquire)
    }
}

/// How a server came to hold a tenant ([`Ownership::acquire`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// It was this server's already (its file here is the tenant's newest copy).
    Held,
    /// Taken over from a server whose lease ran out: the file must come from the store, and
    /// the tenant is this server's to serve once [`Ownership::settle`] says so.
    TakenOver {
        /// The server it was taken from.
        from: String,
        /// The fence it was taken with.
        fence: i64,
        /// When that server's lease ran out (ms since the Unix epoch), if it had one.
        expired_ms: Option<i64>,
    },
}

/// The last takeover this server made, for the console and `/metrics`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Takeover {
    /// The tenant.
    pub slug: String,
    /// The server it was taken from.
    pub from: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// How long the restore from the store took, ms.
    pub restore_ms: u64,
    /// How much before the lost server's lease ran out the restored data ends, ms: at most
    /// this much of what that server acknowledged was lost (none when unknown).
    pub rpo_ms: Option<i64>,
}

/// Takeovers by this server.
#[derive(Debug, Default)]
struct Takeovers {
    count: AtomicU64,
    last: parking_lot::Mutex<Option<Takeover>>,
}

/// What a server reports with its heartbeat.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    /// Tenant files open.
    pub open_tenants: u64,
    /// Free bytes on the data directory's disk.
    pub free_bytes: u64,
    /// Bytes of the tenant files on this disk.
    pub tenant_bytes: u64,
}

/// What a renewal found ([`Ownership::renew`]).
#[derive(Debug, Default)]
pub struct Renewed {
    /// Tenants this server held and lost.
    pub lost: Vec<TenantId>,
    /// Tenants it owns but does not hold yet, with their fences.
    pub unheld: Vec<(TenantId, i64)>,
    /// The deadline this renewal allows: armed by [`Ownership::arm`] once the lost tenants'
    /// handles are revoked.
    pub until: u64,
}

/// Held while a tenant is acquired ([`Ownership::lock`]).
pub(crate) struct Acquiring<'a> {
    ownership: &'a Ownership,
    tenant: TenantId,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        let mut acquiring = self.ownership.acquiring.lock();
        // The map's reference, this one and the guard's: nobody else waits.
        if Arc::strong_count(&self.lock) <= 3 {
            acquiring.remove(&self.tenant);
        }
    }
}

/// A tenant's owner, read by a server that does not hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its name.
    pub node: String,
    /// Where it is reached (`[cluster] advertise`).
    pub advertise: String,
}

/// This server's tenants and its lease; see the module's documentation.
#[derive(Debug)]
pub struct Ownership {
    node: String,
    data_id: String,
    lease: Duration,
    deadline: Arc<Deadline>,
    /// Tenant → the fence it was taken with.
    held: parking_lot::RwLock<HashMap<TenantId, i64>>,
    /// Acquiring a tenant runs once at a time per tenant (the entry is removed once free).
    acquiring: parking_lot::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// When (monotonic ms) the lease last became current after having lapsed (or never been).
    current_since: AtomicU64,
    /// Tenants this server owns but does not hold yet (moved here), from the last renewal:
    /// restored from the store in the background ([`Tenancy::run_takeovers`]).
    pending: parking_lot::Mutex<Vec<TenantId>>,
    /// Tenants whose copy here is stale (lost to another server, not removed yet).
    stale: parking_lot::Mutex<std::collections::HashSet<TenantId>>,
    takeovers: Takeovers,
}

impl Ownership {
    /// The ownership of the server `node` on the data directory `data_id`, whose lease lasts
    /// `lease`. It holds nothing until its first [`Ownership::renew`].
    pub fn new(node: &str, data_id: &str, lease: Duration) -> Self {
        Self {
            node: node.to_owned(),
            data_id: data_id.to_owned(),
            lease,
            deadline: Arc::default(),
            held: parking_lot::RwLock::default(),
            acquiring: parking_lot::Mutex::default(),
            current_since: AtomicU64::new(u64::MAX),
            stale: parking_lot::Mutex::default(),
            pending: parking_lot::Mutex::default(),
            takeovers: Takeovers::default(),
        }
    }

    /// This server's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The deadline every open handle checks.
    pub fn deadline(&self) -> Arc<Deadline> {
        self.deadline.clone()
    }

    /// Whether this server holds `tenant` (whether or not its lease is current).
    pub fn holds(&self, tenant: TenantId) -> bool {
        self.held.read().contains_key(&tenant)
    }

    /// Whether this server may serve `tenant` now: it holds it and its lease is current.
    pub fn serves(&self, tenant: TenantId) -> bool {
        self.deadline.holds() && self.holds(tenant)
    }

    /// How many tenants this server holds.
    pub fn count(&self) -> usize {
        self.held.read().len()
    }

    /// Renews this server's lease and reads back the tenants it owns; returns those it held
    /// and no longer does (taken over while its lease had run out), which the caller retires,
    /// and those it owns but does not hold yet (moved here, or owned before a restart): each is
    /// held once its file is here ([`Ownership::acquire`]; the caller restores it first).
    pub async fn renew(&self, control: &ControlPlane, load: Load) -> Result<Renewed> {
        let sent = mono_ms();
        let writer = control.writer();
        let now = db::now_ms(writer).await?;
        let renewed = db::query(
            "UPDATE nodes SET expires_ms = ?3, heartbeat_at = ?4, open_tenants = ?5, free_bytes = ?6, tenant_bytes = ?7
             WHERE name = ?1 AND data_id = ?2",
        )
        .bind(&self.node)
        .bind(&self.data_id)
        .bind(now + self.lease.as_millis() as i64)
        .bind(control.now())
        .bind(load.open_tenants as i64)
        .bind(load.free_bytes.min(i64::MAX as u64) as i64)
        .bind(load.tenant_bytes.min(i64::MAX as u64) as i64)
        .execute(writer)
        .await?;
        if renewed.rows_affected() == 0 {
            // Removed (a clean stop of a server of the same name?) or taken by another data
            // directory: nothing here is this server's any more.
            self.deadline.0.store(0, Ordering::Release);
            return Err(Error::NotServing(format!(
                "this server (node `{}`) is no longer registered with the control plane",
                self.node
            )));
        }
        // Only tenants held before the read can have been lost: one settled meanwhile (just
        // provisioned, acquired) is not in what the read saw.
        let before: Vec<(TenantId, i64)> = self.held.read().iter().map(|(id, fence)| (*id, *fence)).collect();
        // Read after the renewal: a takeover that committed before it is seen here, and none
        // can commit after it until the lease runs out again.
        let rows: Vec<(String, i64)> =
            db::query_as("SELECT tenant_id, fence FROM tenant_owners WHERE node = ?1")
                .bind(&self.node)
                .fetch_all(control.reader())
                .await?;
        let owned: HashMap<TenantId, i64> =
            rows.into_iter().filter_map(|(id, fence)| Some((id.parse().ok()?, fence))).collect();
        let lost: Vec<TenantId> =
            before.into_iter().filter(|(id, fence)| owned.get(id) != Some(fence)).map(|(id, _)| id).collect();
        let mut held = self.held.write();
        for id in &lost {
            // Unless settled again meanwhile with the row's fence.
            if held.get(id) != owned.get(id) {
                held.remove(id);
            }
        }
        let unheld: Vec<(TenantId, i64)> =
            owned.into_iter().filter(|(id, _)| !held.contains_key(id)).collect();
        *self.pending.lock() = unheld.iter().map(|(id, _)| *id).collect();
        Ok(Renewed { lost, unheld, until: sent + self.lease.as_millis() as u64 * 4 / 5 })
    }

    /// Lets this server write its tenants until `until` (a renewal's, once what it lost is
    /// revoked).
    pub fn arm(&self, until: u64) {
        let now = mono_ms();
        let previous = self.deadline.0.swap(until, Ordering::AcqRel);
        if previous <= now {
            // Current again after a lapse (or for the first time).
            self.current_since.store(now, Ordering::Release);
        }
    }

    /// Whether this server's lease has been current for a whole lease: only then does it take
    /// other servers' tenants over. A server that just started, or just reached PostgreSQL
    /// again after an outage, gives the others one lease to renew theirs first.
    pub fn steady(&self) -> bool {
        let since = self.current_since.load(Ordering::Acquire);
        self.deadline.holds()
            && since != u64::MAX
            && mono_ms().saturating_sub(since) >= self.lease.as_millis() as u64
    }

    /// Hands `tenant` over to the server `to` (a move: its commits are in the store): it is
    /// that server's from now on, with the next fence. Refused when it is not this server's.
    pub async fn hand_over(&self, control: &ControlPlane, tenant: &Tenant, to: &str) -> Result<i64> {
        let fence: Option<i64> = db::query_scalar(
            "UPDATE tenant_owners SET node = ?2, fence = fence + 1 WHERE tenant_id = ?1 AND node = ?3 RETURNING fence",
        )
        .bind(tenant.id.to_string())
        .bind(to)
        .bind(&self.node)
        .fetch_optional(control.writer())
        .await?;
        self.forget(tenant.id);
        fence.ok_or_else(|| {
            Error::NotServing(format!("tenant `{}` is not served by this server", tenant.slug))
        })
    }

    /// Makes `tenant` this server's, when it is not held here: it is this server's already (a
    /// restart, or provisioned here), it has no owner and its file is here (`file_here`: a
    /// tenant from before ownership), or its owner's lease ran out (taken over: the caller
    /// restores its file from the store, `can_take_over` having said the store has one).
    /// Refused with [`Error::Elsewhere`] while another server holds it.
    pub async fn acquire(
        &self,
        control: &ControlPlane,
        tenant: &Tenant,
        file_here: bool,
        can_take_over: impl std::future::Future<Output = Result<bool>>,
    ) -> Result<Acquired> {
        let mut tx = control.writer().begin().await?;
        let row: Option<(String, i64)> =
            db::query_as("SELECT node, fence FROM tenant_owners WHERE tenant_id = ?1")
                .bind(tenant.id.to_string())
                .fetch_optional(&mut tx)
                .await?;
        let (acquired, fence) = match row {
            Some((node, fence)) if node == self.node => (Acquired::Held, fence),
            None if file_here => {
                db::query("INSERT INTO tenant_owners (tenant_id, node, fence) VALUES (?1, ?2, 1)")
                    .bind(tenant.id.to_string())
                    .bind(&self.node)
                    .execute(&mut tx)
                    .await?;
                (Acquired::Held, 1)
            }
            None => {
                return Err(Error::NotServing(format!(
                    "tenant `{}` has no server yet (the server that holds its file has not started); retry shortly",
                    tenant.slug
                )));
            }
            Some((node, fence)) => {
                // Locked, so the owner's renewal waits for this transaction (and then reads
                // back that it lost the tenant) rather than renewing under it.
                let lease: Option<(i64, String)> =
                    db::query_as("SELECT expires_ms, advertise FROM nodes WHERE name = ?1 FOR UPDATE")
                        .bind(&node)
                        .fetch_optional(&mut tx)
                        .await?;
                let now = db::now_ms(&mut tx).await?;
                if let Some((expires, advertise)) = &lease
                    && *expires > now
                {
                    let advertise = advertise.clone();
                    return Err(Error::Elsewhere { tenant: tenant.slug.to_string(), node, advertise });
                }
                let expired_ms = lease.map(|(expires, _)| expires);
                if !self.steady() {
                    return Err(Error::NotServing(format!(
                        "tenant `{}`: its server `{node}` is silent; this server takes it over once it has held its own lease for a whole lease",
                        tenant.slug
                    )));
                }
                if !can_take_over.await? {
                    return Err(Error::NotServing(format!(
                        "tenant `{}`: its server `{node}` stopped and the backup store holds no copy of it yet; \
                         it is served again when `{node}` is back",
                        tenant.slug
                    )));
                }
                db::query("UPDATE tenant_owners SET node = ?2, fence = ?3 WHERE tenant_id = ?1")
                    .bind(tenant.id.to_string())
                    .bind(&self.node)
                    .bind(fence + 1)
                    .execute(&mut tx)
                    .await?;
                (Acquired::TakenOver { from: node, fence: fence + 1, expired_ms }, fence + 1)
            }
        };
        tx.commit().await?;
        // A tenant taken over is served once its file is restored (`settle`): until then
        // requests for it wait for its stripe lock rather than open a stale or missing file.
        if acquired == Acquired::Held && file_here {
            self.settle(tenant.id, fence);
        }
        Ok(acquired)
    }

    /// This server's copy of `tenant` is stale (another server had it since): never trusted.
    pub fn mark_stale(&self, tenant: TenantId) {
        self.stale.lock().insert(tenant);
    }

    /// Whether this server's copy of `tenant` is stale.
    pub fn is_stale(&self, tenant: TenantId) -> bool {
        self.stale.lock().contains(&tenant)
    }

    /// The stale copy is gone (removed, or replaced by a restore).
    pub fn clear_stale(&self, tenant: TenantId) {
        self.stale.lock().remove(&tenant);
    }

    /// `tenant` is this server's to serve, taken with `fence`.
    pub fn settle(&self, tenant: TenantId, fence: i64) {
        self.held.write().insert(tenant, fence);
    }

    /// Forgets `tenant` here until it is acquired again (its file is not on this disk).
    pub fn forget(&self, tenant: TenantId) {
        self.held.write().remove(&tenant);
    }

    /// `tenant`'s fence as the control plane says now.
    async fn fence_of(&self, control: &ControlPlane, tenant: TenantId) -> Result<i64> {
        Ok(db::query_scalar("SELECT fence FROM tenant_owners WHERE tenant_id = ?1")
            .bind(tenant.to_string())
            .fetch_optional(control.reader())
            .await?
            .unwrap_or(1))
    }

    /// The tenants this server holds.
    pub fn held(&self) -> Vec<TenantId> {
        self.held.read().keys().copied().collect()
    }

    /// Gives `tenant` back to `node` with the fence it had there (a takeover, with `fence`,
    /// whose restore failed: the tenant's newest copy may still be on that server's disk, which
    /// keeps it when it comes back).
    pub async fn give_back(
        &self,
        control: &ControlPlane,
        tenant: TenantId,
        node: &str,
        fence: i64,
    ) -> Result<()> {
        self.held.write().remove(&tenant);
        db::query(
            "UPDATE tenant_owners SET node = ?2, fence = ?4 - 1 WHERE tenant_id = ?1 AND node = ?3 AND fence = ?4",
        )
        .bind(tenant.to_string())
        .bind(node)
        .bind(&self.node)
        .bind(fence)
        .execute(control.writer())
        .await?;
        Ok(())
    }

    /// The owner of `tenant` as the control plane says now, if it has one whose lease is
    /// current (else: this server may take it over).
    pub async fn live_owner(&self, control: &ControlPlane, tenant: TenantId) -> Result<Option<Owner>> {
        let owner: Option<(String, String, i64)> = db::query_as(
            "SELECT o.node, n.advertise, n.expires_ms FROM tenant_owners o JOIN nodes n ON n.name = o.node
             WHERE o.tenant_id = ?1",
        )
        .bind(tenant.to_string())
        .fetch_optional(control.reader())
        .await?;
        let Some((node, advertise, expires)) = owner else { return Ok(None) };
        let now = db::now_ms(control.reader()).await?;
        Ok((expires > now).then_some(Owner { node, advertise }))
    }

    /// The last takeover and how many there were.
    pub fn takeovers(&self) -> (u64, Option<Takeover>) {
        (self.takeovers.count.load(Ordering::Relaxed), self.takeovers.last.lock().clone())
    }

    /// The ownership's lines of `/metrics`.
    pub fn to_prometheus(&self) -> String {
        let (count, last) = self.takeovers();
        let mut out = String::new();
        out.push_str("# HELP silo_cluster_tenants_held Tenants this server serves.\n# TYPE silo_cluster_tenants_held gauge\n");
        out.push_str(&format!("silo_cluster_tenants_held {}\n", self.count()));
        out.push_str("# HELP silo_cluster_lease_current Whether this server's lease on its tenants is current.\n# TYPE silo_cluster_lease_current gauge\n");
        out.push_str(&format!("silo_cluster_lease_current {}\n", u8::from(self.deadline.holds())));
        out.push_str("# HELP silo_cluster_takeovers_total Tenants taken over from servers whose lease ran out.\n# TYPE silo_cluster_takeovers_total counter\n");
        out.push_str(&format!("silo_cluster_takeovers_total {count}\n"));
        if let Some(last) = last {
            out.push_str("# HELP silo_cluster_last_takeover_restore_seconds How long the last takeover's restore from the store took.\n# TYPE silo_cluster_last_takeover_restore_seconds gauge\n");
            out.push_str(&format!(
                "silo_cluster_last_takeover_restore_seconds {:.3}\n",
                last.restore_ms as f64 / 1000.0
            ));
            if let Some(rpo) = last.rpo_ms {
                out.push_str("# HELP silo_cluster_last_takeover_rpo_seconds At most this much of what the lost server acknowledged was lost in the last takeover (its lease's end less the last commit in the store).\n# TYPE silo_cluster_last_takeover_rpo_seconds gauge\n");
                out.push_str(&format!(
                    "silo_cluster_last_takeover_rpo_seconds {:.3}\n",
                    rpo.max(0) as f64 / 1000.0
                ));
            }
        }
        out
    }

    /// The tenants whose server's lease ran out (or that left), live ones only, by id: to be
    /// taken over. With the server each was on.
    pub async fn orphans(&self, control: &ControlPlane) -> Result<Vec<(Tenant, String)>> {
        let now = db::now_ms(control.reader()).await?;
        db::query(
            "SELECT t.*, o.node AS owner FROM tenants t JOIN tenant_owners o ON o.tenant_id = t.id
             LEFT JOIN nodes n ON n.name = o.node
             WHERE t.status IN ('active', 'suspended') AND o.node <> ?1 AND (n.name IS NULL OR n.expires_ms <= ?2)
             ORDER BY t.id",
        )
        .bind(&self.node)
        .bind(now)
        .fetch_all(control.reader())
        .await?
        .iter()
        .map(|row| Ok((Tenant::from_row(row)?, row.try_get::<String, _>("owner")?)))
        .collect()
    }

    /// The lock under which `tenant` is acquired (one acquisition, and its restore, at a time;
    /// other tenants never wait for it).
    pub(crate) async fn lock(&self, tenant: TenantId) -> Acquiring<'_> {
        let lock = self.acquiring.lock().entry(tenant).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        Acquiring { ownership: self, tenant, lock, _guard: guard }
    }

    /// Tenants with no owner whose files are here become this server's (at its start: those
    /// provisioned before servers owned tenants). Returns how many.
    pub async fn adopt(&self, control: &ControlPlane, here: impl Fn(&Tenant) -> bool) -> Result<usize> {
        let unowned = db::query(
            "SELECT t.* FROM tenants t WHERE t.status <> 'deleted'
               AND NOT EXISTS (SELECT 1 FROM tenant_owners o WHERE o.tenant_id = t.id)",
        )
        .fetch_all(control.reader())
        .await?
        .iter()
        .map(Tenant::from_row)
        .collect::<Result<Vec<_>>>()?;
        let mine: Vec<&Tenant> = unowned.iter().filter(|t| here(t)).collect();
        if mine.is_empty() {
            return Ok(0);
        }
        let mut tx = control.writer().begin().await?;
        for tenant in &mine {
            db::query("INSERT INTO tenant_owners (tenant_id, node, fence) VALUES (?1, ?2, 1) ON CONFLICT DO NOTHING")
                .bind(tenant.id.to_string())
                .bind(&self.node)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(mine.len())
    }

    /// Tenants owned under an earlier name of this data directory (`[cluster] node` set or
    /// changed after the server ran under another name, the host's by default) become this
    /// name's with the next fence, and the old name's row goes: they are not another server's,
    /// and their files here are the live ones. Refused while the old name's lease is current —
    /// a server that stopped moments ago, or a copy of this data directory running elsewhere
    /// as that server — with when to try again.
    pub async fn take_back_renamed(&self, control: &ControlPlane) -> Result<usize> {
        if self.data_id.is_empty() {
            return Ok(0);
        }
        let mut tx = control.writer().begin().await?;
        let now = db::now_ms(&mut tx).await?;
        let earlier: Vec<(String, i64)> =
            db::query_as("SELECT name, expires_ms FROM nodes WHERE data_id = ?1 AND name <> ?2")
                .bind(&self.data_id)
                .bind(&self.node)
                .fetch_all(&mut tx)
                .await?;
        if let Some((name, expires_ms)) = earlier.iter().find(|(_, expires_ms)| *expires_ms > now) {
            return Err(Error::Busy(format!(
                "this data directory served as node `{name}` until moments ago (its lease runs {:.0} s more): \
                 a renamed server starts under its new name once that lease ran out; a copy of this data \
                 directory cannot join as another server (give it an empty data directory)",
                ((expires_ms - now) as f64 / 1000.0).ceil()
            )));
        }
        let mut taken = 0;
        for (name, _) in &earlier {
            // Only while its lease is still over, checked again on the row itself: a renewal
            // committed since the read above keeps the old name's row and tenants.
            let gone = db::query("DELETE FROM nodes WHERE name = ?1 AND data_id = ?2 AND expires_ms <= ?3")
                .bind(name)
                .bind(&self.data_id)
                .bind(now)
                .execute(&mut tx)
                .await?
                .rows_affected();
            if gone == 0 {
                continue;
            }
            taken += db::query("UPDATE tenant_owners SET node = ?1, fence = fence + 1 WHERE node = ?2")
                .bind(&self.node)
                .bind(name)
                .execute(&mut tx)
                .await?
                .rows_affected() as usize;
            tracing::info!(old = %name, node = %self.node, "this data directory's tenants, owned under its earlier name, are this server's");
        }
        tx.commit().await?;
        Ok(taken)
    }

    /// The tenants other servers own: files of theirs still on this disk (taken over while
    /// this server was away) are stale copies.
    pub async fn owned_elsewhere(&self, control: &ControlPlane) -> Result<Vec<Tenant>> {
        db::query("SELECT t.* FROM tenants t JOIN tenant_owners o ON o.tenant_id = t.id WHERE o.node <> ?1")
            .bind(&self.node)
            .fetch_all(control.reader())
            .await?
            .iter()
            .map(Tenant::from_row)
            .collect()
    }
}

impl Tenancy {
    /// From now on this server owns tenants as node `node` on the data directory `data_id`
    /// (`silo serve` on PostgreSQL, once registered; nothing on `control.db`): tenants without an owner whose files are
    /// here become its own, files here of tenants other servers own are removed (stale
    /// copies), and its lease is renewed a first time. Returns how many tenants it holds.
    pub async fn own(&self, node: &str, data_id: &str) -> Result<usize> {
        if self.control().is_embedded() {
            return Ok(0);
        }
        let ownership = Arc::new(Ownership::new(node, data_id, self.settings().cluster.lease()));
        let control = self.control();
        ownership.take_back_renamed(control).await?;
        let adopted = ownership.adopt(control, |t| self.tenant_path(t).is_ok_and(|p| p.exists())).await?;
        for tenant in ownership.owned_elsewhere(control).await? {
            if let Ok(path) = self.tenant_path(&tenant)
                && path.exists()
            {
                tracing::warn!(tenant = %tenant.id, slug = %tenant.slug, "removing a stale copy: another server owns this tenant (it took the tenant over while this one was away)");
                silo_storage::sqlite::remove_database_files(&path).await?;
            }
        }
        control.set_ownership(ownership.clone());
        // Its own tenants whose files are here are served; the others (a new machine under
        // the name of one that was replaced) come from the store when first asked for.
        let mut missing = 0;
        let renewed = ownership.renew(control, self.load().await).await?;
        ownership.arm(renewed.until);
        for (id, fence) in renewed.unheld {
            let tenant = control.tenant_by_id(id).await?;
            if self.tenant_path(&tenant).is_ok_and(|p| p.exists()) {
                ownership.settle(id, fence);
            } else {
                missing += 1;
            }
        }
        tracing::info!(node, held = ownership.count(), adopted, missing, "owning tenants");
        Ok(ownership.count())
    }

    /// This server's tenants, when it owns tenants (see [`Tenancy::own`]).
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.control().ownership()
    }

    /// The owner of `tenant` whose lease is current, if it has one.
    pub async fn live_owner(&self, tenant: TenantId) -> Result<Option<Owner>> {
        match self.ownership() {
            Some(ownership) => ownership.live_owner(self.control(), tenant).await,
            None => Ok(None),
        }
    }

    /// Which server has each live tenant (slug, node, advertise), by slug; empty outside a
    /// cluster (any process on the control plane may ask).
    pub async fn routes(&self) -> Result<Vec<(String, String, String)>> {
        Ok(db::query_as(
            "SELECT t.slug, o.node, n.advertise FROM tenants t JOIN tenant_owners o ON o.tenant_id = t.id
             JOIN nodes n ON n.name = o.node WHERE t.status IN ('active', 'suspended') ORDER BY t.slug",
        )
        .fetch_all(self.control().reader())
        .await?)
    }

    /// Renews this server's lease (with its heartbeat); tenants it lost meanwhile are revoked
    /// before the lease is armed again (a statement still running on one is refused), and
    /// their files here removed in the background.
    pub async fn renew_lease(&self) -> Result<()> {
        let Some(ownership) = self.control().ownership() else { return Ok(()) };
        let renewed = ownership.renew(self.control(), self.load().await).await?;
        for id in &renewed.lost {
            ownership.mark_stale(*id);
            self.cache().revoke(*id).await;
        }
        ownership.arm(renewed.until);
        if !renewed.lost.is_empty() {
            let fleet = self.clone();
            tokio::spawn(async move {
                for id in renewed.lost {
                    fleet.remove_stale(id).await;
                }
            });
        }
        Ok(())
    }

    /// Removes this server's copy of a tenant another server took over. One still in use
    /// stays marked stale (never served: a return of the tenant restores it from the store)
    /// until the next start removes it.
    async fn remove_stale(&self, id: TenantId) {
        let removed = async {
            let tenant = self.control().tenant_by_id(id).await?;
            tracing::warn!(tenant = %id, slug = %tenant.slug, "another server took this tenant over while this one's lease had run out; its copy here is removed");
            let _lease = self.cache().lease(id).await?;
            silo_storage::sqlite::remove_database_files(&self.tenant_path(&tenant)?).await?;
            Ok::<_, Error>(())
        };
        match removed.await {
            Ok(()) => {
                if let Some(ownership) = self.ownership() {
                    ownership.clear_stale(id);
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "removing the stale copy of a lost tenant failed")
            }
        }
    }

    /// What this server reports with its heartbeat.
    pub(crate) async fn load(&self) -> Load {
        let placement = self.placement().clone();
        let tenant_bytes = tokio::task::spawn_blocking(move || placement.stored_bytes()).await.unwrap_or(0);
        Load {
            open_tenants: self.cache().open_handles(),
            free_bytes: self.disk_space().map_or(0, |d| d.available),
            tenant_bytes,
        }
    }

    /// `Ok` when this server may touch `tenant`'s file, else which server has it
    /// ([`Error::Elsewhere`]). A tenant that is this server's but not here yet (moved here,
    /// its last commits not replayed) is made ready first.
    pub async fn here_or_elsewhere(&self, tenant: &Tenant) -> Result<()> {
        if self.is_here(tenant.id) {
            return Ok(());
        }
        match self.live_owner(tenant.id).await? {
            Some(owner) if self.ownership().is_some_and(|o| o.node() == owner.node) => {
                self.serve(tenant).await
            }
            Some(owner) => Err(Error::Elsewhere {
                tenant: tenant.slug.to_string(),
                node: owner.node,
                advertise: owner.advertise,
            }),
            None => Err(Error::NotServing(format!(
                "tenant `{}` is not served by this server yet; retry shortly",
                tenant.slug
            ))),
        }
    }

    /// Whether this server may touch `tenant`'s file: it owns it, or servers do not own
    /// tenants here (one process owns the data directory).
    pub fn is_here(&self, tenant: TenantId) -> bool {
        self.control().ownership().is_none_or(|o| o.holds(tenant))
    }

    /// Makes sure this server may serve `tenant` before its file is opened: held and leased,
    /// or acquired now (taken over from a server whose lease ran out, its file restored from
    /// the store). Refused with [`Error::Elsewhere`] when another server holds it.
    pub(crate) async fn serve(&self, tenant: &Tenant) -> Result<()> {
        let Some(ownership) = self.control().ownership() else { return Ok(()) };
        if ownership.serves(tenant.id) {
            return Ok(());
        }
        let lapsed = || {
            Error::NotServing(format!(
                "tenant `{}`: this server has lost touch with the control plane; it serves the tenant again once its lease is renewed",
                tenant.slug
            ))
        };
        if ownership.holds(tenant.id) {
            return Err(lapsed());
        }
        let _one = ownership.lock(tenant.id).await;
        if ownership.holds(tenant.id) {
            return if ownership.serves(tenant.id) { Ok(()) } else { Err(lapsed()) };
        }
        let path = self.tenant_path(tenant)?;
        let file_here = path.exists() && !ownership.is_stale(tenant.id);
        let copies = self.copies();
        let can_restore = async {
            match &copies {
                Some(copies) => copies.can_restore(self, tenant).await,
                None => Ok(false),
            }
        };
        match ownership.acquire(self.control(), tenant, file_here, can_restore).await? {
            Acquired::Held if file_here => Ok(()),
            Acquired::Held => {
                // Its own, but not on this disk (moved here, or a replaced machine): the store
                // has it.
                let fence = ownership.fence_of(self.control(), tenant.id).await?;
                if let Err(e) = self.restore_here(tenant).await {
                    tracing::error!(tenant = %tenant.id, slug = %tenant.slug, error = %e, "restoring this server's tenant from the store failed");
                    return Err(unrestorable(tenant, e));
                }
                ownership.clear_stale(tenant.id);
                ownership.settle(tenant.id, fence);
                tracing::info!(tenant = %tenant.id, slug = %tenant.slug, fence, "tenant restored here from the store: it is this server's");
                Ok(())
            }
            Acquired::TakenOver { from, fence, expired_ms } => {
                let started = Instant::now();
                let restored = self.restore_here(tenant).await;
                match restored {
                    Ok(reached) => {
                        ownership.clear_stale(tenant.id);
                        ownership.settle(tenant.id, fence);
                        let takeover = Takeover {
                            slug: tenant.slug.to_string(),
                            from: from.clone(),
                            at_ms: db::now_ms(self.control().reader()).await.unwrap_or_default(),
                            restore_ms: started.elapsed().as_millis() as u64,
                            rpo_ms: expired_ms.zip(reached).map(|(expired, reached)| expired - reached),
                        };
                        tracing::warn!(tenant = %tenant.id, slug = %tenant.slug, from, fence, restore_ms = takeover.restore_ms, rpo_ms = takeover.rpo_ms, "tenant taken over from a server whose lease ran out");
                        ownership.takeovers.count.fetch_add(1, Ordering::Relaxed);
                        *ownership.takeovers.last.lock() = Some(takeover);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(tenant = %tenant.id, slug = %tenant.slug, from, error = %e, "taking a tenant over failed: given back");
                        ownership.give_back(self.control(), tenant.id, &from, fence).await?;
                        Err(unrestorable(tenant, e))
                    }
                }
            }
        }
    }

    /// Every heartbeat until `stop`: restores the tenants moved to this server (it owns them
    /// but does not hold them yet), and takes over tenants whose server's lease ran out (they
    /// are otherwise taken over when first asked for) — this server's share of them: every
    /// live server shares the same list out by room ([`crate::room`]) and takes what falls
    /// to it. Nothing on `control.db`.
    pub async fn run_takeovers(&self, stop: impl std::future::Future<Output = ()>) {
        let Some(ownership) = self.control().ownership() else { return };
        let every = self.settings().cluster.heartbeat();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut stop => return,
            }
            if !ownership.deadline.holds() {
                continue;
            }
            let moved_here = std::mem::take(&mut *ownership.pending.lock());
            let mut tenants = Vec::new();
            for id in moved_here {
                match self.control().tenant_by_id(id).await {
                    Ok(tenant)
                        if matches!(
                            tenant.status,
                            crate::TenantStatus::Active | crate::TenantStatus::Suspended
                        ) =>
                    {
                        tenants.push(tenant)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(tenant = %id, error = %e, "reading a tenant moved here failed"),
                }
            }
            if ownership.steady() {
                match ownership.orphans(self.control()).await {
                    Ok(orphans) if !orphans.is_empty() => match self.rooms().await {
                        Ok(rooms) => {
                            // Their files are on the silent servers: each counts as a tenant.
                            let silent: Vec<&str> = orphans.iter().map(|(_, node)| node.as_str()).collect();
                            let placed = rooms.without(&silent).share_out(&vec![0; orphans.len()]);
                            let mine =
                                orphans.into_iter().zip(placed).filter(|(_, to)| *to == ownership.node);
                            tenants.extend(mine.map(|((tenant, _), _)| tenant));
                        }
                        Err(e) => tracing::warn!(error = %e, "reading the servers' room failed"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "listing the tenants to take over failed"),
                }
            }
            let taken = futures::stream::iter(tenants)
                .map(|tenant| async move {
                    let taken = self.serve(&tenant).await;
                    (tenant, taken)
                })
                .buffer_unordered(self.settings().backup.concurrency());
            tokio::pin!(taken);
            while let Some((tenant, result)) = taken.next().await {
                match result {
                    Ok(()) | Err(Error::Elsewhere { .. }) => {}
                    Err(e) => {
                        tracing::warn!(slug = %tenant.slug, error = %e, "taking a tenant over failed; tried again")
                    }
                }
            }
        }
    }

    /// Restores `tenant`'s file here from the store (a takeover); returns the time of the
    /// last commit restored (ms since the Unix epoch), when known.
    async fn restore_here(&self, tenant: &Tenant) -> Result<Option<i64>> {
        let Some(copies) = self.copies() else {
            return Err(Error::NotServing(format!(
                "tenant `{}`: no backup store to restore it from",
                tenant.slug
            )));
        };
        copies.take_over(self, tenant).await
    }
}

/// What a request is told when the tenant it asks for had to come from the store and could
/// not: the store's state (an object missing, damaged, unreachable) is not the client's doing,
/// and the restore is tried again (at the next heartbeat or request) — 503, the cause in the
/// log, never a 500. A refusal that already says so (the server lost touch) stays as it is.
fn unrestorable(tenant: &Tenant, e: Error) -> Error {
    match e.kind() {
        silo_core::ErrorKind::Internal | silo_core::ErrorKind::Unavailable => Error::NotServing(format!(
            "`{}` is being brought back on this server from the backup store, which cannot give it yet; the operators see why in the log, and it is tried again: retry shortly",
            tenant.slug
        )),
        _ => e,
    }
}
