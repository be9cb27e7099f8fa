//! Projects: the top level of a workspace.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::text;
use crate::{Result, Run};
use silo_core::Timestamp;
use silo_tenancy::Turn;

/// A project with its task counts.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    /// Id within the tenant.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    /// Tasks not done.
    pub open_tasks: i64,
    /// All tasks.
    pub total_tasks: i64,
}

const SELECT: &str = "SELECT p.id, p.name, p.description, p.created_at,
        (SELECT count(*) FROM tasks t WHERE t.project_id = p.id AND t.status <> 'done'),
        (SELECT count(*) FROM tasks t WHERE t.project_id = p.id)
    FROM projects p";

impl Project {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            description: row.get(2)?,
            created_at: row.get(3)?,
            open_tasks: row.get(4)?,
            total_tasks: row.get(5)?,
        })
    }
}

/// Creates a project; returns its id.
pub fn create(db: &Turn, name: &str, description: &str, created_by: Option<i64>) -> Result<i64> {
    Ok(create_within(db, name, description, created_by, None)?.expect("no limit refuses nothing"))
}

/// Creates a project if the workspace has fewer than `limit` projects not archived (none:
/// no limit); returns its id, or `None` when the limit is reached. Count and insert are one
/// statement, so two concurrent creations cannot both take the last place.
pub fn create_within(
    db: &Turn,
    name: &str,
    description: &str,
    created_by: Option<i64>,
    limit: Option<i64>,
) -> Result<Option<i64>> {
    let name = text("name", "a project name", name, 1, 200)?;
    let description = text("description", "a description", description, 0, 5000)?;
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let id: Option<i64> = tx
            .prepare_cached(
                "INSERT INTO projects (name, description, created_by, created_at, updated_at)
                 SELECT ?1, ?2, ?3, ?5, ?5 WHERE ?4 IS NULL OR (SELECT count(*) FROM projects WHERE archived_at IS NULL) < ?4
                 RETURNING id",
            )?
            .query_row(params![name, description, created_by, limit, now.as_str()], |r| r.get(0))
            .optional()?;
        if let Some(id) = id {
            super::activity::record(&tx, now.as_str(), created_by, "project.create", "project", id, &name, None)?;
        }
        tx.commit()?;
        Ok(id)
    })
}

/// Deletes a project with its tasks and their comments (the schema cascades; the search
/// index follows by its triggers); returns its name and how many tasks went with it, or
/// `None` when there is no such project.
pub fn delete(db: &Turn, id: i64, actor: Option<i64>) -> Result<Option<(String, i64)>> {
    let now = db.now();
    db.run(|conn| {
        let tx = conn.transaction()?;
        let tasks: i64 = tx
            .prepare_cached("SELECT count(*) FROM tasks WHERE project_id = ?")?
            .query_row([id], |r| r.get(0))?;
        let name: Option<String> = tx
            .prepare_cached("DELETE FROM projects WHERE id = ? RETURNING name")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        if let Some(name) = &name {
            super::activity::record(&tx, now.as_str(), actor, "project.delete", "project", id, name, None)?;
        }
        tx.commit()?;
        Ok(name.map(|name| (name, tasks)))
    })
}

/// Projects not archived (what a plan's project limit counts).
pub fn count(db: &Turn) -> Result<i64> {
    db.run(|conn| {
        conn.prepare_cached("SELECT count(*) FROM projects WHERE archived_at IS NULL")?
            .query_row([], |r| r.get(0))
    })
}

/// Projects newest first, `limit` of them, older than `before` when given.
pub fn list(db: &Turn, before: Option<i64>, limit: i64) -> Result<Vec<Project>> {
    db.run(|conn| {
        let sql = format!(
            "{SELECT} WHERE p.archived_at IS NULL AND (?1 IS NULL OR p.id < ?1) ORDER BY p.id DESC LIMIT ?2"
        );
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(params![before, limit], Project::from_row)?;
        rows.collect()
    })
}

/// One project.
pub fn get(db: &Turn, id: i64) -> Result<Option<Project>> {
    db.run(|conn| {
        conn.prepare_cached(&format!("{SELECT} WHERE p.id = ? AND p.archived_at IS NULL"))?
            .query_row([id], Project::from_row)
            .optional()
    })
}
