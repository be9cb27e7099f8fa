//! What this crate registers on the fleet ([`silo_tenancy::Copies`]): its state, one per fleet,
//! and what a purge, a migration and a stop ask of the backups.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use silo_core::TenantId;
use silo_tenancy::{Copies, Result, Tenancy, Tenant};
use tokio::sync::OnceCell;

use crate::{BackupKind, BackupStore, Backups, catalogue, control_copies, scheduler};

/// The backups' state in a process: the store, the copies of `control.db`, the scheduler's
/// last round. Registered with the fleet, so every [`Backups`] of it shares one.
#[derive(Default)]
pub(crate) struct State {
    /// The backup store and master key (set up on first use).
    pub(crate) store: OnceCell<BackupStore>,
    /// Copies of `control.db` to the store.
    pub(crate) control_copies: control_copies::ControlCopies,
    /// What the backup scheduler last did.
    pub(crate) scheduler_status: parking_lot::Mutex<scheduler::SchedulerStatus>,
    /// What shipping needs of each tenant it shipped (its row, its wrapped data key), read
    /// from the control plane and remembered: commits made under this server's lease still
    /// reach the store while the control plane cannot be reached (see `continuous`).
    pub(crate) shipping: parking_lot::Mutex<std::collections::HashMap<TenantId, Remembered>>,
    /// Tenants restored here before they move here (`Backups::prepare`).
    pub(crate) prepared: parking_lot::Mutex<std::collections::HashMap<TenantId, crate::restore::Prepared>>,
}

/// A tenant's row and its wrapped data key, as shipping last read them.
pub(crate) type Remembered = (Tenant, Option<Vec<u8>>);

impl State {
    /// The fleet's state, registered on first use.
    pub(crate) fn of(fleet: &Tenancy) -> Arc<Self> {
        let registered = fleet.copies_or_register(|| Arc::new(State::default()));
        registered.into_any().downcast::<State>().unwrap_or_else(|_| {
            panic!("the fleet's copies are registered by another crate than silo-backups")
        })
    }
}

impl Copies for State {
    fn purge_statements(&self) -> &'static [&'static str] {
        catalogue::PURGE_STATEMENTS
    }

    fn delete_all<'a>(
        &'a self,
        fleet: &'a Tenancy,
        tenant: TenantId,
    ) -> BoxFuture<'a, Result<serde_json::Value>> {
        Box::pin(async move {
            let backups = Backups::of(fleet);
            self.shipping.lock().remove(&tenant);
            // A copy prepared for a move is a copy too, here or on another server.
            backups.forget_prepared(tenant).await;
            let prepared_elsewhere = backups.forget_prepared_elsewhere(tenant).await?;
            let catalogued = backups.of_tenant(tenant).await?.len();
            let objects = backups.delete_tenant_objects(tenant).await?;
            Ok(serde_json::json!({
                "store": backups.store().await?.store().describe(),
                "catalogue_rows_removed": catalogued,
                "objects_deleted": objects.len(),
                "object_keys": objects,
                "prepared_copies_removed_on": prepared_elsewhere,
            }))
        })
    }

    fn supersede_control_copies<'a>(&'a self, fleet: &'a Tenancy) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move { Backups::of(fleet).supersede_control_copies().await })
    }

    fn before_migration<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Backups::of(fleet).backup_known(tenant, BackupKind::PreMigration, "migrate").await.map(|_| ())
        })
    }

    fn at_stop<'a>(&'a self, fleet: &'a Tenancy, all_closed: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let backups = Backups::of(fleet);
            // A no-op unless continuous backup runs here.
            if !backups.logs().is_enabled() {
                return;
            }
            let run = backups.ship_changes().await;
            if !run.failed.is_empty() {
                tracing::warn!(
                    failed = run.failed.len(),
                    "continuous backup: commits of some tenants did not reach the store before the stop"
                );
            }
            // Only when every handle closed: one still open may yet commit behind the moment.
            if all_closed {
                backups.close_chains_at_stop().await;
            }
            if let Err(e) = backups.copy_control_now().await {
                tracing::warn!(error = %e, "continuous backup: the last change of control.db did not reach the store");
            }
        })
    }

    fn can_restore<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(!Backups::of(fleet).of_tenant(tenant.id).await?.is_empty()) })
    }

    fn take_over<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<Option<i64>>> {
        Box::pin(async move { Backups::of(fleet).take_over(tenant).await })
    }

    fn after_create<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let backups = Backups::of(fleet);
            match backups.backup_known(tenant, BackupKind::Scheduled, "provision").await {
                Ok(backup) => match backups.relocations().place_new(tenant, backup).await {
                    Ok(Some(node)) => {
                        tracing::info!(tenant = %tenant.id, slug = %tenant.slug, node, "a new tenant went to the server with the most room")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.id, error = %e, "handing a new tenant to the server with the most room failed: it stays here")
                    }
                },
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, error = %e, "the first backup of a new tenant failed (the scheduler tries again)")
                }
            }
        })
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
