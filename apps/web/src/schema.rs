//! The schemas the application assembles for the fleet ([`silo_tenancy::Tenancy::open`]):
//! `control.db`'s migrations — one ordered sequence in `migrations/control`, each file's
//! tables owned by the crate `migrations/control/owners.toml` names (the core's audit log,
//! the jobs, the fleet, the accounts, billing) — and the product's tenant schema
//! (`silo-workspace`).

/// The migrations of `control.db`, embedded in the binary.
pub static CONTROL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");

/// What [`silo_tenancy::Tenancy::open`] takes.
pub fn schema() -> silo_tenancy::Schema {
    silo_tenancy::Schema { control: &CONTROL_MIGRATIONS, tenant: silo_workspace::schema() }
}
