//! Tenant schema migrations: how one tenant file is brought up to date; and [`Schema`], what
//! the application hands to [`crate::Tenancy::open`] (both migration sequences).
//!
//! The migrations themselves belong to the product (`silo-workspace` embeds
//! `migrations/tenant` with `sqlx::migrate!`, versions and checksums) and are handed to
//! [`crate::Tenancy::open`]; applying them to a tenant file happens here, on a rusqlite connection, because fleet migrations open thousands of files
//! and sqlx's driver would spawn a thread per file. The bookkeeping is sqlx's own
//! `_sqlx_migrations` table, so either tool can read it. Each migration, its bookkeeping row
//! and the new `PRAGMA user_version` commit in one transaction: a failure leaves the file as
//! it was. `user_version` mirrors the last applied migration, so the check on every open is
//! one header read.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::{Connection, params};
use sqlx::migrate::Migration;

use crate::{Error, Result};
use silo_core::Timestamp;

/// What the application hands to [`crate::Tenancy::open`]: the control plane's migrations — one
/// ordered sequence (`migrations/control`), each file's tables owned by the crate
/// `migrations/control/owners.toml` names, assembled by the application rather than embedded
/// here; the same versions for PostgreSQL (`migrations/control-postgres`) — and the product's
/// tenant schema.
#[derive(Clone, Copy)]
pub struct Schema {
    /// The migrations of `control.db`, in order.
    pub control: &'static sqlx::migrate::Migrator,
    /// The same migrations for a control plane on PostgreSQL (`[control] url`).
    pub control_postgres: &'static sqlx::migrate::Migrator,
    /// The tenant files' schema.
    pub tenant: crate::TenantSchema,
}

/// sqlx's bookkeeping table, as sqlx creates it for SQLite.
const BOOKKEEPING_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

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

/// The latest version among `migrations`.
pub fn latest_version(migrations: &[Migration]) -> i64 {
    migrations.iter().filter(|m| !m.migration_type.is_down_migration()).map(|m| m.version).max().unwrap_or(0)
}

/// The schema version recorded in the file's header.
pub fn file_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// The schema version recorded in a database file (`PRAGMA user_version`), read on a
/// connection of its own.
pub fn read_file_version(path: &std::path::Path) -> Result<i64> {
    let conn =
        silo_storage::sqlite::open_sync(path, Default::default(), silo_storage::sqlite::OpenMode::ReadOnly)?;
    file_version(&conn)
}

/// Brings one open tenant file up to the latest of `migrations`, recording each as applied
/// at `now`. Blocking.
pub fn migrate(conn: &mut Connection, migrations: &[Migration], now: &Timestamp) -> Result<MigrationOutcome> {
    let latest = latest_version(migrations);
    let current = file_version(conn)?;
    if current >= latest {
        return Ok(MigrationOutcome::AlreadyCurrent(current));
    }
    conn.execute_batch(BOOKKEEPING_TABLE)?;
    let applied: HashMap<i64, (bool, Vec<u8>)> = conn
        .prepare("SELECT version, success, checksum FROM _sqlx_migrations")?
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let mut pending: Vec<&Migration> =
        migrations.iter().filter(|m| !m.migration_type.is_down_migration()).collect();
    pending.sort_by_key(|m| m.version);
    for migration in pending {
        match applied.get(&migration.version) {
            Some((false, _)) => {
                return Err(Error::Schema(format!(
                    "migration {} was left partially applied",
                    migration.version
                )));
            }
            Some((true, checksum)) if checksum.as_slice() != &*migration.checksum => {
                return Err(Error::Schema(format!(
                    "migration {} ({}) was changed after it was applied",
                    migration.version, migration.description
                )));
            }
            Some(_) => {}
            None => apply(conn, migration, now)?,
        }
    }
    Ok(MigrationOutcome::Migrated(latest))
}

fn apply(conn: &mut Connection, migration: &Migration, now: &Timestamp) -> Result<()> {
    let started = Instant::now();
    let tx = conn.transaction()?;
    tx.execute_batch(migration.sql.as_str())?;
    tx.execute(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (?1, ?2, ?5, TRUE, ?3, ?4)",
        params![
            migration.version,
            migration.description.as_ref(),
            migration.checksum.as_ref(),
            started.elapsed().as_nanos() as i64,
            now.as_str()
        ],
    )?;
    tx.pragma_update(None, "user_version", migration.version)?;
    tx.commit()?;
    Ok(())
}

/// A short fingerprint of a set of migrations (versions and checksums), used to name
/// provisioning templates so a changed migration never reuses a stale template.
pub fn fingerprint(migrations: &[Migration]) -> String {
    // FNV-1a: stable across builds and platforms, and enough to tell migration sets apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in migrations {
        for byte in migration.version.to_le_bytes().iter().chain(migration.checksum.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// `base` followed by one more migration (fleet tests and benchmarks use it to stand for "the
/// next release's migration").
pub fn extended(
    base: &[Migration],
    version: i64,
    description: &'static str,
    sql: &'static str,
) -> Vec<Migration> {
    let mut migrations = base.to_vec();
    migrations.push(Migration::new(
        version,
        description.into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sql),
        false,
    ));
    migrations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    /// A one-migration schema standing for the product's (which lives above this crate).
    fn tenant_migrations() -> Vec<Migration> {
        extended(&[], 1, "tasks", "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn applies_pending_migrations_once_and_records_them() {
        let mut conn = memory();
        let all = extended(&tenant_migrations(), 2, "labels", "ALTER TABLE tasks ADD COLUMN label TEXT");
        let (first, second) = (at("2026-01-02T03:04:05.000Z"), at("2026-02-03T04:05:06.000Z"));
        assert_eq!(migrate(&mut conn, &tenant_migrations(), &first).unwrap(), MigrationOutcome::Migrated(1));
        assert_eq!(migrate(&mut conn, &all, &second).unwrap(), MigrationOutcome::Migrated(2));
        assert_eq!(migrate(&mut conn, &all, &Timestamp::now()).unwrap(), MigrationOutcome::AlreadyCurrent(2));
        let installed: Vec<String> = conn
            .prepare("SELECT installed_on FROM _sqlx_migrations WHERE success ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(installed, [first.as_str(), second.as_str()], "each recorded at the clock's time");
        assert_eq!(file_version(&conn).unwrap(), 2);
    }

    #[test]
    fn a_failing_migration_changes_nothing() {
        let mut conn = memory();
        migrate(&mut conn, &tenant_migrations(), &Timestamp::now()).unwrap();
        let bad =
            extended(&tenant_migrations(), 2, "bad", "CREATE TABLE fresh (x); ALTER TABLE nope ADD COLUMN y");
        assert!(migrate(&mut conn, &bad, &Timestamp::now()).is_err());
        assert_eq!(file_version(&conn).unwrap(), 1);
        let fresh: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'fresh'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fresh, 0, "the migration's first statement was rolled back");
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let mut conn = memory();
        let v2 = extended(&tenant_migrations(), 2, "labels", "ALTER TABLE tasks ADD COLUMN label TEXT");
        migrate(&mut conn, &v2, &Timestamp::now()).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let edited = extended(&tenant_migrations(), 2, "labels", "ALTER TABLE tasks ADD COLUMN tag TEXT");
        let err = migrate(&mut conn, &edited, &Timestamp::now()).unwrap_err();
        assert!(err.to_string().contains("changed after it was applied"), "{err}");
    }

    #[test]
    fn fingerprints_follow_the_migrations() {
        let v2 = extended(&tenant_migrations(), 2, "x", "SELECT 1");
        assert_ne!(fingerprint(&tenant_migrations()), fingerprint(&v2));
        assert_eq!(fingerprint(&v2), fingerprint(&v2.clone()));
    }
}
