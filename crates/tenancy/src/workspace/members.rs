//! The tenant's own `members` table (who tasks and comments point at).

use rusqlite::params;

use crate::{Result, TenantDb};

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
