//! Tenant schema migrations: the embedded migrator of `migrations/tenant` and how one tenant
//! file is brought up to date.
//!
//! The schema version of a file is mirrored in `PRAGMA user_version` (the number of the last
//! applied migration), so the check on every open is one pragma read instead of the migrator's
//! table queries; the migrator runs only when that number is behind.

use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, SqliteConnection};

use crate::Result;

/// Migrations of every tenant file, embedded in the binary.
pub static TENANT_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/tenant");

/// What migrating one file did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationOutcome {
    /// It was already at the latest version.
    AlreadyCurrent(i64),
    /// Migrations were applied; the new version.
    Migrated(i64),
}

impl MigrationOutcome {
    /// The file's schema version afterwards.
    pub fn version(self) -> i64 {
        match self {
            Self::AlreadyCurrent(v) | Self::Migrated(v) => v,
        }
    }
}

/// The latest version a migrator knows.
pub fn latest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The schema version recorded in the file's header.
pub async fn file_version(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("PRAGMA user_version").fetch_one(conn).await?)
}

/// Brings one open tenant file up to `migrator`'s latest version.
pub async fn migrate(conn: &mut SqliteConnection, migrator: &Migrator) -> Result<MigrationOutcome> {
    let latest = latest_version(migrator);
    let current = file_version(conn).await?;
    if current >= latest {
        return Ok(MigrationOutcome::AlreadyCurrent(current));
    }
    // `run_direct` rather than `run`: `run` takes `impl Acquire`, whose higher-ranked bound
    // makes every caller's future lose `Send` (a known sqlx limitation).
    migrator.run_direct(None, &mut *conn, false).await?;
    // Safe to format: an integer. `user_version` is a 32-bit header field; migration numbers are small sequence numbers.
    sqlx::query(AssertSqlSafe(format!("PRAGMA user_version = {latest}"))).execute(&mut *conn).await?;
    Ok(MigrationOutcome::Migrated(latest))
}

/// A short fingerprint of a migrator's migrations (versions and checksums), used to name
/// provisioning templates so a changed migration never reuses a stale template.
pub fn fingerprint(migrator: &Migrator) -> String {
    // FNV-1a: stable across builds and platforms, and enough to tell migration sets apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in migrator.iter() {
        for byte in migration.version.to_le_bytes().iter().chain(migration.checksum.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A migrator with `base`'s migrations followed by one more (fleet tests and benchmarks use it
/// to stand for "the next release's migration").
pub fn extended(base: &Migrator, version: i64, description: &'static str, sql: &'static str) -> Migrator {
    let mut migrations: Vec<_> = base.iter().cloned().collect();
    migrations.push(sqlx::migrate::Migration::new(
        version,
        description.into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sql),
        false,
    ));
    Migrator::with_migrations(migrations)
}
