//! Projects and tasks.

use serde::Serialize;
use sqlx::FromRow;

use crate::{Result, TenantDb};

/// A task row.
#[derive(Clone, Debug, Serialize, FromRow, PartialEq, Eq)]
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

/// A full-text search hit.
#[derive(Clone, Debug, Serialize, FromRow)]
pub struct SearchHit {
    /// `task` or `comment`.
    pub kind: String,
    /// The task the hit belongs to.
    pub task_id: i64,
    /// The matching text with `[`…`]` around matched terms.
    pub snippet: String,
}

/// Creates a project; returns its id.
pub async fn create_project(db: &TenantDb, name: &str) -> Result<i64> {
    let mut conn = db.connection().await;
    let id = sqlx::query_scalar("INSERT INTO projects (name) VALUES (?) RETURNING id")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}

/// Creates a task; returns its id.
pub async fn create_task(db: &TenantDb, project_id: i64, title: &str, body: &str) -> Result<i64> {
    let mut conn = db.connection().await;
    let id = sqlx::query_scalar(
        "INSERT INTO tasks (project_id, title, body) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(project_id)
    .bind(title)
    .bind(body)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// One task by id.
pub async fn get_task(db: &TenantDb, id: i64) -> Result<Option<Task>> {
    let mut conn = db.connection().await;
    let task = sqlx::query_as(
        "SELECT id, project_id, title, body, status, due_date FROM tasks WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(task)
}

/// Number of tasks.
pub async fn count_tasks(db: &TenantDb) -> Result<i64> {
    let mut conn = db.connection().await;
    Ok(sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&mut *conn)
        .await?)
}

/// Full-text search over tasks and comments, best first.
pub async fn search(db: &TenantDb, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
    let mut conn = db.connection().await;
    let hits = sqlx::query_as(
        "SELECT kind, task_id, snippet(search_index, -1, '[', ']', '…', 12) AS snippet
         FROM search_index WHERE search_index MATCH ? ORDER BY rank LIMIT ?",
    )
    .bind(query)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(hits)
}
