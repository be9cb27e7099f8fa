//! Tasks: listing with filters, creation, edits, deletion, and full-text search.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::text;
use crate::{Error, Result, Run};
use silo_core::Timestamp;
use silo_tenancy::Turn;

/// The statuses a task moves through, in order (their stored names).
pub const STATUSES: [&str; 3] = ["todo", "doing", "done"];

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Not started.
    Todo,
    /// In progress.
    Doing,
    /// Finished.
    Done,
}

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::Doing => "doing",
            Self::Done => "done",
        }
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "todo" => Ok(Self::Todo),
            "doing" => Ok(Self::Doing),
            "done" => Ok(Self::Done),
            _ => Err(Error::invalid("status", format!("status must be one of {}", STATUSES.join(", ")))),
        }
    }
}

impl rusqlite::types::FromSql for TaskStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e: Error| rusqlite::types::FromSqlError::Other(e.into()))
    }
}

impl rusqlite::ToSql for TaskStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// A task row with its assignee's name.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub status: TaskStatus,
    /// Assigned member (id in the workspace's member list).
    pub assignee_id: Option<i64>,
    /// Assigned member's display name.
    pub assignee: Option<String>,
    /// Due date (`YYYY-MM-DD`).
    pub due_date: Option<String>,
    /// Creation time (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    /// Last change (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
}

/// The columns [`Task`] reads (a macro so the statements below stay string literals).
macro_rules! select {
    () => {
        "SELECT t.id, t.project_id, t.title, t.body, t.status, t.assignee_id,
            m.display_name || CASE WHEN m.left_at IS NULL THEN '' ELSE ' (left)' END, t.due_date, t.created_at, t.updated_at
        FROM tasks t LEFT JOIN members m ON m.id = t.assignee_id"
    };
}

/// The statement [`get`] runs (benchmarks run it through other drivers to compare).
pub const GET_SQL: &str = concat!(select!(), " WHERE t.id = ?");

impl Task {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            project_id: row.get(1)?,
            title: row.get(2)?,
            body: row.get(3)?,
            status: row.get(4)?,
            assignee_id: row.get(5)?,
            assignee: row.get(6)?,
            due_date: row.get(7)?,
            created_at: row.get(8)?,
            updated_at: row.get(9)?,
        })
    }
}

/// Which tasks to list.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only this project.
    pub project: Option<i64>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this assignee.
    pub assignee: Option<i64>,
    /// Page: tasks with a smaller id than this (the previous page's last id); newest first
    /// only.
    pub before: Option<i64>,
    /// In which order.
    pub order: TaskOrder,
    /// Page of another order than newest first: how many of the order to skip.
    pub skip: i64,
}

/// The order tasks are listed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskOrder {
    /// Newest first (by id; pages by `before`).
    #[default]
    Newest,
    /// Soonest due first; tasks without a due date last.
    Due,
    /// Most recently changed first.
    Updated,
}

impl TaskOrder {
    /// Every order with its name in a URL (`?sort=`).
    pub const ALL: [(Self, &'static str); 3] =
        [(Self::Newest, "newest"), (Self::Due, "due"), (Self::Updated, "updated")];

    /// The order a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(order, _)| *order)
    }

    /// Its name in a URL.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(order, _)| *order == self).map_or("newest", |(_, n)| n)
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Newest => " ORDER BY t.id DESC LIMIT ?",
            Self::Due => " ORDER BY t.due_date IS NULL, t.due_date, t.id DESC LIMIT ? OFFSET ?",
            Self::Updated => " ORDER BY t.updated_at DESC, t.id DESC LIMIT ? OFFSET ?",
        }
    }
}

/// A new task.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Its project.
    pub project_id: i64,
    /// Title (1–200 characters, not only spaces).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub title: String,
    /// Body text (up to 20,000 characters).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 20000))]
    pub body: String,
    /// `todo` (default), `doing` or `done`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<TaskStatus>))]
    pub status: Option<String>,
    /// Assigned member.
    #[serde(default)]
    pub assignee_id: Option<i64>,
    /// Due date (`YYYY-MM-DD`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = Date))]
    pub due_date: Option<String>,
}

/// Changes to a task; absent fields are left alone. `assignee_id` / `due_date` set to `null`
/// clear them.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// New title (1–200 characters, not only spaces).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub title: Option<String>,
    /// New body (up to 20,000 characters).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 20000))]
    pub body: Option<String>,
    /// New status.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<TaskStatus>))]
    pub status: Option<String>,
    /// New assignee (`null` unassigns).
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub assignee_id: Option<Option<i64>>,
    /// New due date (`null` clears).
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub due_date: Option<Option<String>>,
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

fn status(value: &str) -> Result<TaskStatus> {
    value.parse()
}

fn due_date(value: Option<&str>) -> Result<Option<String>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(date) => {
            let valid = date.len() == 10
                && date
                    .as_bytes()
                    .iter()
                    .enumerate()
                    .all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() });
            let month: u32 = date.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
            let day: u32 = date.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(0);
            if valid && (1..=12).contains(&month) && (1..=31).contains(&day) {
                Ok(Some(date.to_owned()))
            } else {
                Err(Error::invalid("due_date", format!("due date `{date}` is not a date (YYYY-MM-DD)")))
            }
        }
    }
}

/// Maps SQLite's refusals (a project, assignee or date that does not exist) to input errors;
/// a missing project or assignee is `missing`'s to name (the constraint does not say which).
fn refused(e: Error, missing: (&'static str, &'static str)) -> Error {
    match e {
        Error::Tenancy(silo_tenancy::Error::TenantSql(rusqlite::Error::SqliteFailure(code, message)))
            if code.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let message = message.unwrap_or_default();
            let (field, what) = if message.contains("has left") {
                ("assignee_id", "the assignee has left the workspace")
            } else if message.contains("FOREIGN KEY") {
                missing
            } else if message.contains("due_date") {
                ("due_date", "the due date is not a valid date")
            } else {
                ("task", "the task breaks a rule of the workspace")
            };
            Error::invalid(field, what)
        }
        other => other,
    }
}

/// Creates a task; returns its id.
pub fn create(db: &Turn, new: &NewTask, created_by: Option<i64>) -> Result<i64> {
    let title = text("title", "a title", &new.title, 1, 200)?;
    let body = text("body", "the body", &new.body, 0, 20_000)?;
    let status = status(new.status.as_deref().unwrap_or("todo"))?;
    let due = due_date(new.due_date.as_deref())?;
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO tasks (project_id, title, body, status, assignee_id, due_date, created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING id",
            )?
            .query_row(
                params![new.project_id, title, body, status, new.assignee_id, due, created_by, now.as_str()],
                |r| r.get(0),
            )?;
        super::activity::record(&tx, now.as_str(), created_by, "task.create", "task", id, &title, None)?;
        tx.commit()?;
        Ok(id)
    })
    .map_err(|e| {
        let missing = match project_exists(db, new.project_id) {
            Ok(false) => ("project_id", "the project does not exist in this workspace"),
            _ => ("assignee_id", "the assignee is not a member of this workspace"),
        };
        refused(e, missing)
    })
}

/// Whether the workspace has project `id`.
fn project_exists(db: &Turn, id: i64) -> Result<bool> {
    db.run(|conn| {
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM projects WHERE id = ?)")?
            .query_row([id], |r| r.get(0))
    })
}

/// Applies a patch; returns the updated task, `None` when it does not exist.
pub fn update(db: &Turn, id: i64, patch: &TaskPatch, actor: Option<i64>) -> Result<Option<Task>> {
    let title = patch.title.as_deref().map(|t| text("title", "a title", t, 1, 200)).transpose()?;
    let body = patch.body.as_deref().map(|b| text("body", "the body", b, 0, 20_000)).transpose()?;
    let new_status = patch.status.as_deref().map(status).transpose()?;
    let due = patch.due_date.as_ref().map(|d| due_date(d.as_deref())).transpose()?;
    let now = db.now();
    let changed = db
        .run(|conn| {
            let tx = conn.transaction()?;
            let changed = tx
                .prepare_cached(
                    "UPDATE tasks SET title = coalesce(?2, title), body = coalesce(?3, body),
                     status = coalesce(?4, status),
                     assignee_id = CASE WHEN ?5 THEN ?6 ELSE assignee_id END,
                     due_date = CASE WHEN ?7 THEN ?8 ELSE due_date END,
                     updated_at = ?9
                     WHERE id = ?1 RETURNING title",
                )?
                .query_row(
                    params![
                        id,
                        title,
                        body,
                        new_status,
                        patch.assignee_id.is_some(),
                        patch.assignee_id.flatten(),
                        due.is_some(),
                        due.clone().flatten(),
                        now.as_str(),
                    ],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            if let Some(title) = &changed {
                super::activity::record(&tx, now.as_str(), actor, "task.update", "task", id, title, None)?;
            }
            tx.commit()?;
            Ok(changed.is_some())
        })
        // A patch cannot move a task: only its assignee can be missing.
        .map_err(|e| refused(e, ("assignee_id", "the assignee is not a member of this workspace")))?;
    if changed { get(db, id) } else { Ok(None) }
}

/// Deletes a task (and its comments); returns whether it existed.
pub fn delete(db: &Turn, id: i64, actor: Option<i64>) -> Result<bool> {
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let title: Option<String> = tx
            .prepare_cached("DELETE FROM tasks WHERE id = ? RETURNING title")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(title) = &title {
            super::activity::record(&tx, now.as_str(), actor, "task.delete", "task", id, title, None)?;
        }
        tx.commit()?;
        Ok(title.is_some())
    })
}

/// One task by id.
pub fn get(db: &Turn, id: i64) -> Result<Option<Task>> {
    db.run(|conn| conn.prepare_cached(GET_SQL)?.query_row([id], Task::from_row).optional())
}

/// Tasks matching the filter, in its order, at most `limit`.
///
/// The statement names only the filters given (one cached statement per combination) rather
/// than `?1 IS NULL OR …`, so SQLite can use the `(project_id, status, id)` index.
pub fn list(db: &Turn, filter: &TaskFilter, limit: i64) -> Result<Vec<Task>> {
    if let Some(s) = &filter.status {
        status(s)?;
    }
    let mut sql = String::from(concat!(select!(), " WHERE 1"));
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(5);
    for (clause, value) in [
        (" AND t.project_id = ?", filter.project.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        (" AND t.status = ?", filter.status.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        (" AND t.assignee_id = ?", filter.assignee.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        (
            " AND t.id < ?",
            filter
                .before
                .as_ref()
                .filter(|_| filter.order == TaskOrder::Newest)
                .map(|v| v as &dyn rusqlite::ToSql),
        ),
    ] {
        if let Some(value) = value {
            sql.push_str(clause);
            values.push(value);
        }
    }
    sql.push_str(filter.order.sql());
    values.push(&limit);
    if filter.order != TaskOrder::Newest {
        values.push(&filter.skip);
    }
    db.run(|conn| {
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(&values[..], Task::from_row)?;
        rows.collect()
    })
}

/// Number of tasks.
pub fn count_tasks(db: &Turn) -> Result<i64> {
    db.run(|conn| conn.prepare_cached("SELECT count(*) FROM tasks")?.query_row([], |r| r.get(0)))
}

/// A full-text search hit.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// `task` or `comment`.
    pub kind: String,
    /// The task the hit belongs to.
    pub task_id: i64,
    /// The task's title.
    pub title: String,
    /// The matching text with [`MATCH_START`] … [`MATCH_END`] around matched terms.
    pub snippet: String,
}

/// Marks the start of a matched term in [`SearchHit::snippet`] (a control character, so it
/// cannot be confused with the text; the web layer turns it into `<mark>` or `[`).
pub const MATCH_START: char = '\u{2}';
/// Marks the end of a matched term.
pub const MATCH_END: char = '\u{3}';

/// Full-text search over tasks and comments, best first. The query is taken as words (each
/// quoted), so user input never reaches FTS5's query syntax. Over a large file it may take
/// milliseconds: it runs on the blocking pool, with the caller's turn.
pub async fn search(db: &Turn, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
    // Each word quoted (FTS5 syntax in the query is text); a NUL ends FTS5's reading of a
    // string, so it separates words like a space.
    let words: Vec<String> = query
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let query = words.join(" ");
    db.run_blocking(move |conn| {
        let mut statement = conn.prepare_cached(
            "SELECT s.kind, s.task_id, t.title, snippet(search_index, -1, char(2), char(3), '…', 12)
             FROM search_index s JOIN tasks t ON t.id = s.task_id
             WHERE search_index MATCH ? ORDER BY rank LIMIT ?",
        )?;
        let hits = statement.query_map(params![query, limit], |r| {
            Ok(SearchHit { kind: r.get(0)?, task_id: r.get(1)?, title: r.get(2)?, snippet: r.get(3)? })
        })?;
        hits.collect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_checked() {
        assert_eq!(due_date(Some("2026-11-22")).unwrap().as_deref(), Some("2026-11-22"));
        assert_eq!(due_date(Some("  ")).unwrap(), None);
        for bad in ["2026-13-01", "2026-1-01", "tomorrow", "2026/11/22", "2026-11-32"] {
            assert!(due_date(Some(bad)).is_err(), "{bad}");
        }
    }
}
