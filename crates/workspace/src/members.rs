//! The tenant's own `members` table (who tasks and comments point at). The control plane's
//! `memberships` decide access; this table mirrors them inside the file so a tenant's data is
//! self-contained (export, restore).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use silo_tenancy::{Result, TenantDb};

/// A member of the workspace.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    /// Id within the tenant (what tasks point at).
    pub id: i64,
    /// The global account.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// When they joined (UTC).
    pub joined_at: String,
}

/// Inserts a member or updates its email, name and role.
pub fn upsert(db: &TenantDb, user_id: &str, email: &str, display_name: &str, role: &str) -> Result<i64> {
    db.call(|conn| {
        conn.prepare_cached(
            "INSERT INTO members (user_id, email, display_name, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
             role = excluded.role
             RETURNING id",
        )?
        .query_row(params![user_id, email, display_name, role], |r| r.get(0))
    })
}

/// Number of members.
pub fn count(db: &TenantDb) -> Result<i64> {
    db.call(|conn| conn.prepare_cached("SELECT count(*) FROM members")?.query_row([], |r| r.get(0)))
}

/// The member row of an account.
pub fn by_user(db: &TenantDb, user_id: &str) -> Result<Option<Member>> {
    db.call(|conn| {
        conn.prepare_cached(
            "SELECT id, user_id, email, display_name, role, joined_at FROM members WHERE user_id = ?",
        )?
        .query_row([user_id], member)
        .optional()
    })
}

/// Members by name, `limit` of them after `after` (a display name, then id).
pub fn list(db: &TenantDb, after: Option<i64>, limit: i64) -> Result<Vec<Member>> {
    db.call(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT id, user_id, email, display_name, role, joined_at FROM members
             WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, limit], member)?;
        rows.collect()
    })
}

/// Removes an account's member row (its tasks become unassigned); returns whether it existed.
pub fn remove(db: &TenantDb, user_id: &str) -> Result<bool> {
    db.call(|conn| Ok(conn.prepare_cached("DELETE FROM members WHERE user_id = ?")?.execute([user_id])? > 0))
}

fn member(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        id: r.get(0)?,
        user_id: r.get(1)?,
        email: r.get(2)?,
        display_name: r.get(3)?,
        role: r.get(4)?,
        joined_at: r.get(5)?,
    })
}
