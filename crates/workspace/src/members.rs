//! The tenant's own `members` table (who tasks and comments point at). The control plane's
//! `memberships` decide access; this table mirrors them inside the file so a tenant's data is
//! self-contained (export, restore).
//!
//! A member who leaves (or is removed) keeps their row, marked `left_at`: what they wrote stays
//! theirs ("Dave (left)"), and erasing them later finds every row that points at them. Only
//! erasure deletes a member row. Joining again clears the mark.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Result, Run};
use silo_tenancy::Turn;

/// A member of the workspace (current, or former: `left_at`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// Id within the tenant (what tasks point at).
    pub id: i64,
    /// The global account.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `owner`, `admin` or `member` (for a former member: the role they had).
    pub role: String,
    /// When they joined (UTC).
    pub joined_at: String,
    /// When they left or were removed (UTC); `None` while they belong.
    pub left_at: Option<String>,
}

/// Who joins (or whose role changes): the account's id, address, name and role.
#[derive(Clone, Copy, Debug)]
pub struct Joining<'a> {
    /// The global account.
    pub user_id: &'a str,
    /// Email.
    pub email: &'a str,
    /// Display name.
    pub display_name: &'a str,
    /// `owner`, `admin` or `member`.
    pub role: &'a str,
}

const COLUMNS: &str = "id, user_id, email, display_name, role, joined_at, left_at";

/// Makes the account a current member with `role` (a new row, a role change, or a former
/// member joining again); returns the row as it was before, for [`restore`].
pub fn join(db: &Turn, joining: Joining<'_>) -> Result<Option<Member>> {
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let before = by_user_in(&tx, joining.user_id)?;
        tx.prepare_cached(
            "INSERT INTO members (user_id, email, display_name, role, joined_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
             role = excluded.role, left_at = NULL",
        )?
        .execute(params![
            joining.user_id,
            joining.email,
            joining.display_name,
            joining.role,
            now.as_str()
        ])?;
        tx.commit()?;
        Ok(before)
    })
}

/// The founder's row in a new tenant file (`silo_tenancy::Founder`'s seed), joined `at`, on
/// the file's only connection before the tenant is published.
pub fn seed(conn: &mut rusqlite::Connection, joining: Joining<'_>, at: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO members (user_id, email, display_name, role, joined_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![joining.user_id, joining.email, joining.display_name, joining.role, at],
    )?;
    Ok(())
}

/// Marks the account's row as gone (it keeps its name, and everything it wrote keeps
/// pointing at it); returns the row as it was before, for [`restore`].
pub fn leave(db: &Turn, user_id: &str) -> Result<Option<Member>> {
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let before = by_user_in(&tx, user_id)?;
        tx.prepare_cached("UPDATE members SET left_at = ?2 WHERE user_id = ?1 AND left_at IS NULL")?
            .execute([user_id, now.as_str()])?;
        tx.commit()?;
        Ok(before)
    })
}

/// Puts the account's row back exactly as `before` was (`None`: it did not exist, so the row
/// [`join`] made is deleted — nothing can point at a row that just appeared). The undo of a
/// membership change whose control-plane half failed.
pub fn restore(db: &Turn, user_id: &str, before: Option<&Member>) -> Result<()> {
    db.run(|conn| {
        match before {
            Some(m) => conn
                .prepare_cached(
                    "UPDATE members SET email = ?2, display_name = ?3, role = ?4, joined_at = ?5, left_at = ?6
                     WHERE user_id = ?1",
                )?
                .execute(params![m.user_id, m.email, m.display_name, m.role, m.joined_at, m.left_at])?,
            None => conn.prepare_cached("DELETE FROM members WHERE user_id = ?")?.execute([user_id])?,
        };
        Ok(())
    })
}

/// Brings the member rows to `current` (a restored file: `silo_tenancy::TenantSchema`'s
/// reconcile): each current member gets a current row with their address, name and role;
/// a current row of anyone else is marked as gone. Returns how many rows changed.
pub fn reconcile(
    conn: &mut rusqlite::Connection,
    current: &[silo_tenancy::CurrentMember],
    now: &silo_core::Timestamp,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut changed = 0;
    for member in current {
        changed += tx
            .prepare_cached(
                "INSERT INTO members (user_id, email, display_name, role, joined_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, display_name = excluded.display_name,
                     role = excluded.role, left_at = NULL
                 WHERE (email, display_name, role, left_at) IS NOT (excluded.email, excluded.display_name, excluded.role, NULL)",
            )?
            .execute(params![member.user_id, member.email, member.display_name, member.role, now.as_str()])?;
    }
    let ids: Vec<&str> = current.iter().map(|m| m.user_id.as_str()).collect();
    changed += tx.execute(
        "UPDATE members SET left_at = ?2 WHERE left_at IS NULL AND user_id NOT IN (SELECT value FROM json_each(?1))",
        [serde_json::to_string(&ids).expect("strings serialise"), now.as_str().to_owned()],
    )?;
    tx.commit()?;
    Ok(changed)
}

/// Updates the address and name of the account's row (current or former), keeping its role.
pub fn update_profile(db: &Turn, user_id: &str, email: &str, display_name: &str) -> Result<()> {
    db.run(|conn| {
        conn.prepare_cached("UPDATE members SET email = ?2, display_name = ?3 WHERE user_id = ?1")?
            .execute(params![user_id, email, display_name])?;
        Ok(())
    })
}

/// Number of current members.
pub fn count(db: &Turn) -> Result<i64> {
    db.run(|conn| {
        conn.prepare_cached("SELECT count(*) FROM members WHERE left_at IS NULL")?.query_row([], |r| r.get(0))
    })
}

/// The member row of an account (current or former).
pub fn by_user(db: &Turn, user_id: &str) -> Result<Option<Member>> {
    db.run(|conn| by_user_in(conn, user_id))
}

fn by_user_in(conn: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<Option<Member>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM members WHERE user_id = ?"))?
        .query_row([user_id], member)
        .optional()
}

/// Current members, `limit` of them after id `after`.
pub fn list(db: &Turn, after: Option<i64>, limit: i64) -> Result<Vec<Member>> {
    db.run(|conn| {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM members WHERE left_at IS NULL AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![after, limit], member)?;
        rows.collect()
    })
}

/// Former members (newest departure first), at most `limit`.
pub fn former(db: &Turn, limit: i64) -> Result<Vec<Member>> {
    db.run(|conn| {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM members WHERE left_at IS NOT NULL ORDER BY left_at DESC, id LIMIT ?1"
        ))?;
        let rows = statement.query_map([limit], member)?;
        rows.collect()
    })
}

fn member(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        id: r.get(0)?,
        user_id: r.get(1)?,
        email: r.get(2)?,
        display_name: r.get(3)?,
        role: r.get(4)?,
        joined_at: r.get(5)?,
        left_at: r.get(6)?,
    })
}
