//! The audit log (`audit_log` in `control.db`): who did what, when, to which tenant. Every
//! layer appends to it inside the transaction of the change it records, so an entry exists
//! exactly when the change does; it is the one table this crate owns (migration 0001).

use serde::Serialize;

use crate::db::{self, Db, Row};
use crate::erasure::ErasureStep;
use crate::{TenantId, Timestamp};

/// A row of `audit_log`.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// Time (UTC).
    pub at: String,
    /// Who did it (`cli`, `system`, an operator's email…).
    pub actor: String,
    /// What was done (`tenant.create`, `tenant.purge`, …).
    pub action: String,
    /// The tenant concerned.
    pub tenant_id: Option<String>,
    /// Details as JSON.
    pub detail: serde_json::Value,
}

/// Appends an entry made `at` (the change's time, on the process's clock) inside `tx`.
pub async fn record(
    tx: &mut db::Tx,
    at: &Timestamp,
    actor: &str,
    action: &str,
    tenant: Option<TenantId>,
    detail: &serde_json::Value,
) -> sqlx::Result<()> {
    db::query("INSERT INTO audit_log (at, actor, action, tenant_id, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(at.as_str())
        .bind(actor)
        .bind(action)
        .bind(tenant.map(|t| t.to_string()))
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What erasing a person does to the log (see [`crate::erasure`]): entries they made, or
/// that name their account, name the keyed hash instead; an entry quoting their address
/// keeps its action and time but loses its detail.
pub const ERASURE_STEPS: &[ErasureStep] = &[
    ErasureStep { table: "audit_log", rows: "audit_log WHERE actor IN (?1, ?2)", set: Some("actor = ?3") },
    ErasureStep {
        table: "audit_log",
        rows: "audit_log WHERE json_extract(detail, '$.user') = ?1",
        set: Some("detail = json_set(detail, '$.user', ?3)"),
    },
    ErasureStep {
        table: "audit_log",
        rows: "audit_log WHERE instr(lower(detail), ?2) > 0",
        set: Some("detail = '{}'"),
    },
];

/// Removes the tenant's slug and name from the detail of its entries, inside the purge's
/// transaction: a purged workspace leaves no name behind.
pub async fn forget_tenant_names(tx: &mut db::Tx, tenant: TenantId) -> sqlx::Result<u64> {
    let changed = db::query(
        "UPDATE audit_log SET detail = json_remove(detail, '$.slug', '$.name')
         WHERE tenant_id = ?1 AND (json_type(detail, '$.slug') IS NOT NULL OR json_type(detail, '$.name') IS NOT NULL)",
    )
    .bind(tenant.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(changed.rows_affected())
}

/// The log, newest first: `limit` entries older than `before`, optionally only actions
/// starting with `action`.
pub async fn page(
    pool: &Db,
    before: Option<i64>,
    action: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    let rows = db::query(
        "SELECT * FROM audit_log WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)
         ORDER BY id DESC LIMIT ?3",
    )
    .bind(before)
    .bind(action)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry).collect()
}

/// Entries about one tenant, newest first.
pub async fn of_tenant(pool: &Db, id: TenantId, limit: i64) -> sqlx::Result<Vec<AuditEntry>> {
    let rows = db::query("SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY id DESC LIMIT ?")
        .bind(id.to_string())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(entry).collect()
}

/// Entries about a person, oldest first: done by `actor` (their email) or naming their
/// account id as `user` in the detail.
pub async fn about(pool: &Db, actor: &str, user_id: &str) -> sqlx::Result<Vec<AuditEntry>> {
    let rows = db::query(
        "SELECT * FROM audit_log WHERE actor = ?1 OR json_extract(detail, '$.user') = ?2 ORDER BY id",
    )
    .bind(actor)
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry).collect()
}

fn entry(row: &Row) -> sqlx::Result<AuditEntry> {
    let detail: String = row.try_get("detail")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        tenant_id: row.try_get("tenant_id")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
    })
}
