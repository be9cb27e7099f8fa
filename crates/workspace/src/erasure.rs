//! Erasing one person from a tenant file (GDPR Art. 17), as the personal-data manifest
//! (`migrations/tenant/personal_data.toml`) says, table by table:
//!
//! 1. rows kept (`rows = "keep"`) that the person made get their `anonymise` columns replaced
//!    (a task's title becomes `[erased]`), and the activity entries about those rows lose
//!    their detail (which quotes the old title — a copy the manifest's columns cannot see);
//! 2. rows deleted with the person (`rows = "delete"`: their comments, their activity) go;
//! 3. every `unlink` column pointing at them is set to NULL (assignee, author);
//! 4. their member row goes;
//! 5. the full-text index runs these deletes with its `secure-delete` option, so the old words
//!    are removed from its segments at once rather than left behind as tombstones (a merge of
//!    the whole index, `optimize`, would do the same at the cost of rewriting all of it).
//!
//! The caller runs this on a connection that has the file to itself with `secure_delete` on
//! and truncates the WAL afterwards (`silo_tenancy::Erasures::in_file`); the same steps, as
//! counts, answer a dry run. Tables or columns a file does not have (an older schema, after a
//! migration rollback) are skipped.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use rusqlite::{Connection, named_params};
use serde::Serialize;
use silo_tenancy::privacy::{Action, Manifest, Rows};

/// How many rows each step touched (or would), by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Rows deleted.
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// Rows with columns replaced.
    #[serde(skip_serializing_if = "is_zero")]
    pub anonymised: u64,
    /// References to the person set to NULL.
    #[serde(skip_serializing_if = "is_zero")]
    pub unlinked: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What erasure did (or would do) in one file, by table; tables it did not touch are left out.
pub type Counts = BTreeMap<String, TableCounts>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Deleted,
    Anonymised,
    Unlinked,
}

/// One statement of the erasure: on `table`, the rows `filter` selects (`:member` is the
/// person's member id, `:user` their account id), either deleted or `set`.
struct Step {
    table: String,
    filter: String,
    set: Option<String>,
    effect: Effect,
    columns: Vec<String>,
}

/// The steps, built once from the embedded manifest (names come from it, never from input).
static STEPS: LazyLock<Vec<Step>> = LazyLock::new(|| steps(&crate::personal_data()));

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn steps(manifest: &Manifest) -> Vec<Step> {
    let mut steps = Vec::new();
    let key = |person: &str| if person == "user_id" { ":user" } else { ":member" };
    // 1. Derived copies first: activity quoting rows the person made (before those rows are
    //    unlinked from them below).
    steps.push(Step {
        table: "activity".into(),
        filter: "detail <> '{}' AND ((subject_kind = 'task' AND subject_id IN (SELECT id FROM tasks WHERE created_by = :member)) \
                 OR (subject_kind = 'project' AND subject_id IN (SELECT id FROM projects WHERE created_by = :member)))"
            .into(),
        set: Some("detail = '{}'".into()),
        effect: Effect::Anonymised,
        columns: vec!["detail".into(), "subject_kind".into(), "subject_id".into()],
    });
    for (table, rules) in &manifest.tables {
        let (Some(person), Rows::Keep) = (&rules.person, rules.rows) else { continue };
        let set: Vec<String> = rules
            .columns
            .iter()
            .filter(|(_, c)| c.action == Action::Anonymise)
            .map(|(name, c)| format!("\"{name}\" = {}", quote(c.replacement.as_deref().unwrap_or_default())))
            .collect();
        if !set.is_empty() {
            steps.push(Step {
                table: table.clone(),
                filter: format!("\"{person}\" = {}", key(person)),
                set: Some(set.join(", ")),
                effect: Effect::Anonymised,
                columns: rules.columns.keys().cloned().collect(),
            });
        }
    }
    // 2. The person's own rows in tables that delete them; their member row last (4).
    let deletes = manifest.tables.iter().filter(|(_, r)| r.rows == Rows::Delete);
    let (member, others): (Vec<_>, Vec<_>) =
        deletes.filter_map(|(t, r)| Some((t, r.person.as_ref()?))).partition(|(_, p)| *p == "user_id");
    for (table, person) in others {
        steps.push(Step {
            table: table.clone(),
            filter: format!("\"{person}\" = {}", key(person)),
            set: None,
            effect: Effect::Deleted,
            columns: vec![person.clone()],
        });
    }
    // 3. References to the person from rows that stay.
    for (table, rules) in &manifest.tables {
        for (column, _) in rules.columns.iter().filter(|(_, c)| c.action == Action::Unlink) {
            steps.push(Step {
                table: table.clone(),
                filter: format!("\"{column}\" = :member"),
                set: Some(format!("\"{column}\" = NULL")),
                effect: Effect::Unlinked,
                columns: vec![column.clone()],
            });
        }
    }
    for (table, person) in member {
        steps.push(Step {
            table: table.clone(),
            filter: format!("\"{person}\" = :user"),
            set: None,
            effect: Effect::Deleted,
            columns: vec![person.clone()],
        });
    }
    steps
}

/// Erases the person with account id `user_id` from the file (`dry_run`: only counts). `None`
/// when they have no member row in it (never joined, or already erased).
pub fn erase(conn: &mut Connection, user_id: &str, dry_run: bool) -> rusqlite::Result<Option<Counts>> {
    let member: Option<i64> = conn
        .query_row("SELECT id FROM members WHERE user_id = ?1", [user_id], |row| row.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    let Some(member) = member else { return Ok(None) };
    let schema = silo_tenancy::privacy::schema_columns(conn)?;
    let tx = conn.transaction()?;
    // 5. (set up first) FTS5 keeps deleted entries in its segments until they are merged;
    //    `secure-delete` removes them as the triggers delete (and `secure_delete` zeroes the
    //    freed pages). Set for this transaction only: it makes every later delete dearer.
    let fts = !dry_run && schema.contains_key("search_index");
    if fts {
        tx.execute("INSERT INTO search_index (search_index, rank) VALUES ('secure-delete', 1)", [])?;
    }
    let mut counts = Counts::new();
    for step in STEPS.iter() {
        let present =
            schema.get(&step.table).is_some_and(|have| step.columns.iter().all(|c| have.contains(c)));
        if !present {
            continue;
        }
        let sql = match (&step.set, dry_run) {
            (_, true) => format!("SELECT count(*) FROM \"{}\" WHERE {}", step.table, step.filter),
            (None, false) => format!("DELETE FROM \"{}\" WHERE {}", step.table, step.filter),
            (Some(set), false) => format!("UPDATE \"{}\" SET {set} WHERE {}", step.table, step.filter),
        };
        let mut statement = tx.prepare(&sql)?;
        let n = if step.filter.contains(":user") {
            run(&mut statement, dry_run, named_params! { ":user": user_id })?
        } else {
            run(&mut statement, dry_run, named_params! { ":member": member })?
        };
        if n > 0 {
            let entry = counts.entry(step.table.clone()).or_default();
            match step.effect {
                Effect::Deleted => entry.deleted += n,
                Effect::Anonymised => entry.anonymised += n,
                Effect::Unlinked => entry.unlinked += n,
            }
        }
    }
    if dry_run {
        return Ok(Some(counts));
    }
    if fts {
        tx.execute("INSERT INTO search_index (search_index, rank) VALUES ('secure-delete', 0)", [])?;
    }
    tx.commit()?;
    Ok(Some(counts))
}

/// [`erase`] as a closure for `Turn::call_blocking` or `Erasures::in_file`.
pub fn eraser(
    user_id: String,
    dry_run: bool,
) -> impl FnOnce(&mut Connection) -> rusqlite::Result<Option<Counts>> + Send + 'static {
    move |conn| erase(conn, &user_id, dry_run)
}

fn run(
    statement: &mut rusqlite::Statement<'_>,
    dry_run: bool,
    params: &[(&str, &dyn rusqlite::ToSql)],
) -> rusqlite::Result<u64> {
    if dry_run {
        statement.query_row(params, |row| row.get::<_, i64>(0)).map(|n| n as u64)
    } else {
        statement.execute(params).map(|n| n as u64)
    }
}

/// Forgets every member `is_erased` names (by account id): the ledger replay a restore runs
/// (`silo_tenancy::TenantSchema::forget`). Returns how many were found.
pub fn forget(conn: &mut Connection, is_erased: &dyn Fn(&str) -> bool) -> rusqlite::Result<usize> {
    let members: Vec<String> = conn
        .prepare("SELECT user_id FROM members")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut forgotten = 0;
    for user_id in members.iter().filter(|id| is_erased(id)) {
        if erase(conn, user_id, false)?.is_some() {
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_follow_the_manifest() {
        let tables: Vec<(&str, &str)> = STEPS
            .iter()
            .map(|s| (s.table.as_str(), if s.set.is_some() { "set" } else { "delete" }))
            .collect();
        // Derived copies first, the member row last, every unlink column in between.
        assert_eq!(tables.first(), Some(&("activity", "set")));
        assert_eq!(tables.last(), Some(&("members", "delete")));
        for (table, column) in [("tasks", "assignee_id"), ("tasks", "created_by"), ("projects", "created_by")]
        {
            assert!(
                STEPS
                    .iter()
                    .any(|s| s.table == table && s.set.as_deref() == Some(&format!("\"{column}\" = NULL"))),
                "{table}.{column} is unlinked"
            );
        }
        assert!(
            STEPS.iter().any(|s| s.table == "comments" && s.set.is_none() && s.filter.contains("author_id"))
        );
        let tasks = STEPS.iter().find(|s| s.table == "tasks" && s.effect == Effect::Anonymised).unwrap();
        assert!(tasks.set.as_deref().unwrap().contains("\"title\" = '[erased]'"), "{:?}", tasks.set);
    }
}
