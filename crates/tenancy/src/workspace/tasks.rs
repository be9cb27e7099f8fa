//! Projects and tasks.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::{Result, TenantDb};

/// A task row.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Task {
    /// Id within the tenant.
    pub id: i64,
    /// Its project.
    pub project_id: i64,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// `todo`, `doing` or `done`.
    pub status: String,
    /// Due date (`YYYY-MM-DD`).
    pub due_date: Option<String>,
}

impl Task {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            project_id: row.get(1)?,
            title: row.get(2)?,
            body: row.get(3)?,
            status: row.get(4)?,
            due_date: row.get(5)?,
        })
    }
}

/// A full-text search hit.
#[derive(Clone, Debug, Serialize)]
pub struct SearchHit {
    /// `task` or `comment`.
    pub kind: String,
    /// The task the hit belongs to.
    pub task_id: i64,
    /// The matching text with `[`…`]` around matched terms.
    pub snippet: String,
}

/// Creates a project; returns its id.
pub fn create_project(db: &TenantDb, name: &str) -> Result<i64> {
    db.call(|conn| {
        conn.prepare_cached("INSERT INTO projects (name) VALUES (?) RETURNING id")?
            .query_row([name], |r| r.get(0))
    })
}

/// Creates a task; returns its id.
pub fn create_task(db: &TenantDb, project_id: i64, title: &str, body: &str) -> Result<i64> {
    db.call(|conn| {
        conn.prepare_cached("INSERT INTO tasks (project_id, title, body) VALUES (?, ?, ?) RETURNING id")?
            .query_row(params![project_id, title, body], |r| r.get(0))
    })
}

/// One task by id.
pub fn get_task(db: &TenantDb, id: i64) -> Result<Option<Task>> {
    db.call(|conn| {
        conn.prepare_cached("SELECT id, project_id, title, body, status, due_date FROM tasks WHERE id = ?")?
            .query_row([id], Task::from_row)
            .optional()
    })
}

/// Number of tasks.
pub fn count_tasks(db: &TenantDb) -> Result<i64> {
    db.call(|conn| conn.prepare_cached("SELECT count(*) FROM tasks")?.query_row([], |r| r.get(0)))
}

/// Full-text search over tasks and comments, best first.
pub fn search(db: &TenantDb, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
    db.call(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT kind, task_id, snippet(search_index, -1, '[', ']', '…', 12)
             FROM search_index WHERE search_index MATCH ? ORDER BY rank LIMIT ?",
        )?;
        let hits = statement.query_map(params![query, limit], |r| {
            Ok(SearchHit { kind: r.get(0)?, task_id: r.get(1)?, snippet: r.get(2)? })
        })?;
        hits.collect()
    })
}
