//! The schemas the application assembles for the fleet ([`silo_tenancy::Tenancy::open`], or
//! [`open`] with the backups registered):
//! `control.db`'s migrations — one ordered sequence in `migrations/control`, each file's
//! tables owned by the crate `migrations/control/owners.toml` names (the core's audit log,
//! the jobs, the fleet, the accounts, billing) — and the product's tenant schema
//! (`silo-workspace`).

/// The migrations of `control.db`, embedded in the binary.
pub static CONTROL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");

/// The same versions for a control plane on PostgreSQL (`[control] url`), embedded too.
pub static CONTROL_POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/control-postgres");

/// What [`silo_tenancy::Tenancy::open`] takes.
pub fn schema() -> silo_tenancy::Schema {
    silo_tenancy::Schema {
        control: &CONTROL_MIGRATIONS,
        control_postgres: &CONTROL_POSTGRES_MIGRATIONS,
        tenant: silo_workspace::schema(),
    }
}

/// The fleet as the application runs it: opened with [`schema`], its backups registered
/// (so a purge, an erasure and a stop reach the copies in the store from the first moment).
pub async fn open(settings: silo_tenancy::Settings) -> silo_tenancy::Result<silo_tenancy::Tenancy> {
    let fleet = silo_tenancy::Tenancy::open(settings, schema()).await?;
    silo_backups::Backups::of(&fleet);
    Ok(fleet)
}
