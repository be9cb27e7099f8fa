//! `silo-workspace`: the tenant product — the schema of every tenant file
//! (`migrations/tenant`) and the repositories over it. Every SQL statement that touches a
//! tenant file lives here, behind a [`silo_tenancy::Turn`], so HTTP handlers, the CLI and the
//! accounts crate never see the driver.
//!
//! Lists are paged by keyset (`before` = the last id of the previous page), so a page costs
//! the same however deep it is.
//!
//! # Layout
//! - [`MIGRATOR`] / [`migrations`]: the tenant schema, embedded; `silo-tenancy` applies it
//!   (lazily on open, at provisioning and in fleet runs) without knowing what it holds.
//!   [`personal_data`]: its personal-data manifest (a test keeps it complete).
//! - [`projects`], [`tasks`] (with full-text [`tasks::search`]), [`comments`]: the product.
//! - [`members`]: the tenant file's copy of its members (kept in step by `silo-accounts`), so
//!   assignees and authors resolve inside the file.
//! - [`activity`]: the tenant's activity feed.
//! - [`Error`]: a refused value (with the field it concerns), or the fleet's error.
//! - [`subject`]: one person's rows, as the manifest attributes them (subject exports);
//!   [`erasure`]: erasing one person from a file as the manifest says ([`schema`] hands its
//!   `forget` to tenancy for the erasure ledger's replay on restore).

pub mod activity;
pub mod comments;
pub mod erasure;
mod error;
pub mod members;
pub mod projects;
pub mod subject;
pub mod tasks;

use sqlx::migrate::{Migration, Migrator};

pub use error::{Error, Result};

/// Migrations of every tenant file, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/tenant");

/// `migrations/tenant/personal_data.toml`: what every column of a tenant file holds about a
/// person and what erasing that person does with it.
pub const PERSONAL_DATA: &str = include_str!("../../../migrations/tenant/personal_data.toml");

/// The tenant schema's personal-data manifest.
pub fn personal_data() -> silo_tenancy::privacy::Manifest {
    silo_tenancy::privacy::Manifest::parse(PERSONAL_DATA)
        .expect("the embedded tenant manifest is valid (tested)")
}

/// The embedded tenant migrations as a slice.
pub fn migrations() -> &'static [Migration] {
    MIGRATOR.iter().as_slice()
}

/// The tenant schema as tenancy needs it (what [`silo_tenancy::Tenancy::open`] takes): the
/// migrations, [`erasure::forget`] for the erasure ledger's replay on restore, and
/// [`members::reconcile`] to bring a restored file's members up to date.
pub fn schema() -> silo_tenancy::TenantSchema {
    silo_tenancy::TenantSchema {
        migrations: migrations(),
        forget: erasure::forget,
        reconcile: members::reconcile,
    }
}

/// [`Turn::call`](silo_tenancy::Turn::call) and
/// [`Turn::call_blocking`](silo_tenancy::Turn::call_blocking) answering with this crate's error.
pub(crate) trait Run {
    /// A short statement or transaction, inline.
    fn run<T>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T>;

    /// Longer work on the blocking pool, with the turn.
    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T>;
}

impl Run for silo_tenancy::Turn {
    fn run<T>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T> {
        Ok(self.call(f)?)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        Ok(self.call_blocking(f).await?)
    }
}

/// Largest page any list returns.
pub const MAX_PAGE: i64 = 100;

/// Clamps a requested page size to `1..=MAX_PAGE`.
pub fn page_size(requested: Option<i64>, default: i64) -> i64 {
    requested.unwrap_or(default).clamp(1, MAX_PAGE)
}

/// Trims `value` (the field `field`, called `label` in messages: "a title") and checks it has
/// between `min` and `max` characters.
pub fn text(field: &'static str, label: &str, value: &str, min: usize, max: usize) -> Result<String> {
    // The most is of what was sent (as the API's schema says), the least of what it says.
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("{label} is at most {max} characters")));
    }
    let value = silo_core::text::trim(value);
    if value.chars().count() < min {
        return Err(Error::invalid(field, format!("{label} must not be empty")));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(migrations: &[Migration]) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        silo_tenancy::schema::migrate(&mut conn, migrations, &silo_core::Timestamp::now()).unwrap();
        silo_tenancy::privacy::schema_columns(&conn).unwrap()
    }

    #[test]
    fn every_tenant_column_is_classified() {
        let schema = schema(migrations());
        assert!(schema.contains_key("tasks") && schema.contains_key("search_index_content"), "{schema:?}");
        assert_eq!(personal_data().unclassified(&schema), Vec::<String>::new());
    }

    #[test]
    fn a_migration_that_adds_an_unclassified_column_fails() {
        let next = silo_tenancy::schema::extended(
            migrations(),
            silo_tenancy::schema::latest_version(migrations()) + 1,
            "labels",
            "ALTER TABLE tasks ADD COLUMN label TEXT",
        );
        assert_eq!(personal_data().unclassified(&schema(&next)), ["tasks.label is not in the manifest"]);
    }
}
