//! Personal-data manifests: for every table and column of a database, what it holds about a
//! person and what erasing that person does with it (GDPR Art. 17). `control.db`'s is
//! `migrations/control/personal_data.toml` ([`Manifest::control`]); each tenant file's belongs
//! to the product (`silo-workspace`). [`Manifest::unclassified`] compares a manifest with a
//! migrated schema, so a migration that adds a column nobody classified fails a test.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `migrations/control/personal_data.toml`.
pub const CONTROL: &str = include_str!("../../../migrations/control/personal_data.toml");

/// A database's manifest: its tables by name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
}

/// What a table holds about a person.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The column that ties a row to the person (none: no row is about one person).
    pub person: Option<String>,
    /// What erasure does with the person's rows.
    pub rows: Rows,
    /// Columns by name.
    pub columns: BTreeMap<String, Column>,
}

/// What erasure does with the person's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rows {
    /// They go.
    Delete,
    /// They stay, their columns treated one by one.
    Keep,
}

/// What a column holds and what erasure does with it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// What erasure does.
    pub action: Action,
    /// The value an anonymised column gets.
    pub replacement: Option<String>,
    /// Why a kept column is kept.
    pub reason: Option<String>,
}

/// What erasure does with a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Holds the person's data: gone with the row.
    Delete,
    /// Replaced by the column's `replacement` in the person's rows.
    Anonymise,
    /// Points at the person: set to NULL.
    Unlink,
    /// Not about a person (or derived), for the column's `reason`.
    Keep,
}

impl Manifest {
    /// Parses and checks a manifest: kept columns give a reason, anonymised ones a
    /// replacement, and a table's `person` is one of its columns.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| Error::Config(format!("personal-data manifest: {e}")))?;
        let mut problems = Vec::new();
        for (name, table) in &manifest.tables {
            if let Some(person) = &table.person
                && !table.columns.contains_key(person)
            {
                problems.push(format!("{name}: person column `{person}` is not listed"));
            }
            for (column, rule) in &table.columns {
                match rule.action {
                    Action::Keep if rule.reason.is_none() => {
                        problems.push(format!("{name}.{column}: kept without a reason"))
                    }
                    Action::Anonymise if rule.replacement.is_none() => {
                        problems.push(format!("{name}.{column}: anonymised without a replacement"))
                    }
                    _ => {}
                }
            }
        }
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(Error::Config(format!("personal-data manifest: {}", problems.join("; "))))
        }
    }

    /// `control.db`'s manifest.
    pub fn control() -> Self {
        Self::parse(CONTROL).expect("the embedded control manifest is valid (tested)")
    }

    /// `table.column` of every column of `schema` that the manifest does not classify, and of
    /// every column it classifies that `schema` does not have.
    pub fn unclassified(&self, schema: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        let mut found = Vec::new();
        for (table, columns) in schema {
            let listed = self.tables.get(table);
            for column in columns {
                if listed.is_none_or(|t| !t.columns.contains_key(column)) {
                    found.push(format!("{table}.{column} is not in the manifest"));
                }
            }
        }
        for (table, rules) in &self.tables {
            for column in rules.columns.keys() {
                if schema.get(table).is_none_or(|columns| !columns.contains(column)) {
                    found.push(format!("{table}.{column} is in the manifest but not in the schema"));
                }
            }
        }
        found
    }
}

/// Every table of a database (SQLite's own and the migrations' bookkeeping aside) and its
/// columns.
pub fn schema_columns(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Vec<String>>> {
    let mut tables = BTreeMap::new();
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name <> '_sqlx_migrations' ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in names {
        let columns = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([&name], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tables.insert(name, columns);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control_schema() -> BTreeMap<String, Vec<String>> {
        let mut conn = Connection::open_in_memory().unwrap();
        static CONTROL: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");
        let migrations: Vec<_> = CONTROL.iter().cloned().collect();
        crate::schema::migrate(&mut conn, &migrations, &silo_core::Timestamp::now()).unwrap();
        schema_columns(&conn).unwrap()
    }

    #[test]
    fn every_control_plane_column_is_classified() {
        let schema = control_schema();
        assert!(schema.contains_key("users") && schema.contains_key("jobs"), "{schema:?}");
        assert_eq!(Manifest::control().unclassified(&schema), Vec::<String>::new());
    }

    #[test]
    fn a_new_column_or_a_bad_rule_is_reported() {
        let mut schema = control_schema();
        schema.get_mut("users").unwrap().push("phone".into());
        assert_eq!(Manifest::control().unclassified(&schema), ["users.phone is not in the manifest"]);
        let kept = "[tables.t]\nrows = \"keep\"\n[tables.t.columns]\nx = { action = \"keep\" }\n";
        assert!(Manifest::parse(kept).unwrap_err().to_string().contains("t.x: kept without a reason"));
        let person = "[tables.t]\nperson = \"who\"\nrows = \"delete\"\n[tables.t.columns]\nx = { action = \"delete\" }\n";
        assert!(Manifest::parse(person).unwrap_err().to_string().contains("person column `who`"));
        assert!(Manifest::parse("[tables.t]\nrows = \"maybe\"\ncolumns = {}\n").is_err());
    }
}
