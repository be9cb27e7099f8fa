//! Comments on tasks.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::text;
use crate::{Result, Run};
use silo_core::Timestamp;
use silo_tenancy::Turn;

/// A comment with its author's name.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comment {
    /// Id within the tenant.
    pub id: i64,
    /// Author's display name (" (left)" after it once they left), if the author is known.
    pub author: Option<String>,
    /// Text.
    pub body: String,
    /// Time (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Adds a comment to a task; returns its id.
pub fn create(db: &Turn, task_id: i64, author: Option<i64>, body: &str) -> Result<i64> {
    let body = text("body", "a comment", body, 1, 10_000)?;
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO comments (task_id, author_id, body, created_at) VALUES (?, ?, ?, ?) RETURNING id",
            )?
            .query_row(params![task_id, author, body, now.as_str()], |r| r.get(0))?;
        let summary: String = body.chars().take(80).collect();
        let title: Option<String> =
            tx.prepare_cached("SELECT title FROM tasks WHERE id = ?")?.query_row([task_id], |r| r.get(0)).optional()?;
        super::activity::record(&tx, now.as_str(), author, "comment.create", "task", task_id, &summary, title.as_deref())?;
        tx.commit()?;
        Ok(id)
    })
}

/// Comments of a task, oldest first; `limit` of them after `after`.
pub fn list(db: &Turn, task_id: i64, after: Option<i64>, limit: i64) -> Result<Vec<Comment>> {
    db.run(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT c.id, m.display_name || CASE WHEN m.left_at IS NULL THEN '' ELSE ' (left)' END, c.body, c.created_at FROM comments c
             LEFT JOIN members m ON m.id = c.author_id
             WHERE c.task_id = ?1 AND (?2 IS NULL OR c.id > ?2) ORDER BY c.id LIMIT ?3",
        )?;
        let rows = statement.query_map(params![task_id, after, limit], |r| {
            Ok(Comment { id: r.get(0)?, author: r.get(1)?, body: r.get(2)?, created_at: r.get(3)? })
        })?;
        rows.collect()
    })
}
