//! Moving an installation's control plane from `control.db` to PostgreSQL (`silo control
//! copy-to-postgres`): the way from one server to a cluster without starting over.
//!
//! The copy runs with the server stopped (the CLI holds the data directory's lock), so
//! `control.db` does not change under it. Both schemas are brought to this binary's version by
//! their own migrations (`migrations/control`, `migrations/control-postgres`: the same versions,
//! table for table); then every table PostgreSQL has is filled from `control.db`'s table of
//! the same name, column by column, in **one PostgreSQL transaction**: a copy that fails
//! anywhere leaves the target as empty as it was.
//!
//! - **What is not copied:** `nodes` and `tenant_owners`, the servers' own state. The first
//!   server started on PostgreSQL over this data directory owns every tenant whose file it has
//!   (`crate::ownership`'s adoption), as a single server did.
//! - **Types** come from PostgreSQL's catalogue: SQLite's 0/1 become booleans, and its loosely
//!   typed values are read as the target column's type. A value that does not fit stops the
//!   copy with its table and column.
//! - **Order:** a table is filled after the tables it references (foreign keys, from
//!   `pg_constraint`); a column that references its own table (a session's parent, a credit
//!   note's invoice) is filled by an update once every row of the table is in.
//! - **Identity columns** keep their values (`OVERRIDING SYSTEM VALUE`); their sequences
//!   continue after the largest.
//! - **Checked:** every table's row count on both sides before the commit.
//! - **Afterwards** `control.db` (checkpointed) is renamed `control.db.copied-to-postgres`
//!   and the data directory is marked as PostgreSQL's ([`super::control::mark_data_dir`]),
//!   so a server started without `[control] url` refuses instead of making an empty one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, QueryBuilder, Row as _};

use crate::control::ControlPlane;
use crate::{Error, Result, Schema};
use silo_core::db::Db;

/// The servers' own state: never copied (see the module).
const NOT_COPIED: &[&str] = &["nodes", "tenant_owners"];

/// Tables the migrations give rows (the invoice counter): a new control plane has them, and
/// they are replaced by `control.db`'s. A target where any other table has a row is refused.
const SEEDED: &[&str] = &["invoice_sequence"];

/// Rows inserted per statement (PostgreSQL takes at most 65,535 parameters in one).
const BATCH: usize = 500;

/// What the copy did.
#[derive(Debug, Serialize)]
pub struct Copied {
    /// Rows copied, by table, in the order the tables were filled.
    pub tables: Vec<(String, u64)>,
    /// Where `control.db` went.
    pub old_control_db: PathBuf,
}

/// A column of a target table, as PostgreSQL's catalogue describes it.
#[derive(Debug)]
struct Column {
    name: String,
    kind: Kind,
    /// `GENERATED ALWAYS AS IDENTITY` or `BY DEFAULT`: its sequence continues after the copy.
    identity: bool,
}

/// How a value is read from SQLite and bound for PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    BigInt,
    Int,
    Bool,
    Bytes,
    Real,
}

impl Kind {
    fn of(data_type: &str) -> Option<Self> {
        Some(match data_type {
            "text" | "character varying" => Self::Text,
            "bigint" => Self::BigInt,
            "integer" | "smallint" => Self::Int,
            "boolean" => Self::Bool,
            "bytea" => Self::Bytes,
            "real" => Self::Real,
            _ => return None,
        })
    }
}

/// One value on its way.
#[derive(Debug)]
enum Value {
    Text(Option<String>),
    BigInt(Option<i64>),
    Int(Option<i32>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Real(Option<f32>),
}

impl Value {
    fn read(row: &SqliteRow, index: usize, kind: Kind) -> sqlx::Result<Self> {
        // Unchecked: SQLite keeps a value's own storage class whatever the column's declared
        // type; the target's type says what it must become.
        Ok(match kind {
            Kind::Text => Self::Text(row.try_get_unchecked(index)?),
            Kind::BigInt => Self::BigInt(row.try_get_unchecked(index)?),
            Kind::Int => Self::Int(row.try_get_unchecked::<Option<i64>, _>(index)?.map(|v| v as i32)),
            Kind::Bool => Self::Bool(row.try_get_unchecked::<Option<i64>, _>(index)?.map(|v| v != 0)),
            Kind::Bytes => Self::Bytes(row.try_get_unchecked(index)?),
            Kind::Real => Self::Real(row.try_get_unchecked::<Option<f64>, _>(index)?.map(|v| v as f32)),
        })
    }

    /// The null of a column of `kind`.
    fn null(kind: Kind) -> Self {
        match kind {
            Kind::Text => Self::Text(None),
            Kind::BigInt => Self::BigInt(None),
            Kind::Int => Self::Int(None),
            Kind::Bool => Self::Bool(None),
            Kind::Bytes => Self::Bytes(None),
            Kind::Real => Self::Real(None),
        }
    }

    /// Appends the value to `statement` as a parameter.
    fn bind(self, statement: &mut QueryBuilder<Postgres>) {
        match self {
            Self::Text(v) => statement.push_bind(v),
            Self::BigInt(v) => statement.push_bind(v),
            Self::Int(v) => statement.push_bind(v),
            Self::Bool(v) => statement.push_bind(v),
            Self::Bytes(v) => statement.push_bind(v),
            Self::Real(v) => statement.push_bind(v),
        };
    }

    fn is_null(&self) -> bool {
        match self {
            Self::Text(v) => v.is_none(),
            Self::BigInt(v) => v.is_none(),
            Self::Int(v) => v.is_none(),
            Self::Bool(v) => v.is_none(),
            Self::Bytes(v) => v.is_none(),
            Self::Real(v) => v.is_none(),
        }
    }
}

/// A target table: its columns, the tables it references, its own-table references and its
/// primary key.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<Column>,
    references: BTreeSet<String>,
    self_references: Vec<String>,
    primary_key: Vec<String>,
}

/// Copies the control plane of `data_dir` (its `control.db`) into the empty PostgreSQL
/// database at `url`; see the module. The caller holds the data directory's lock.
pub async fn copy_to_postgres(data_dir: &Path, url: &silo_core::Secret, schema: &Schema) -> Result<Copied> {
    let path = data_dir.join("control.db");
    if !path.exists() {
        return Err(Error::Config(format!("{} has no control.db to copy", data_dir.display())));
    }
    let clock = silo_core::ProcessClock::default();
    let source = ControlPlane::open(&path, schema.control, clock.clone()).await?;
    let target = ControlPlane::open_postgres(url, 4, schema.control_postgres, clock, None).await?;
    let copied = match (source.writer(), target.writer()) {
        (Db::Sqlite(from), Db::Postgres(to, _)) => copy(from, to).await,
        _ => unreachable!("control.db is SQLite and [control] url PostgreSQL"),
    };
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            source.close().await;
            target.close().await;
            return Err(e);
        }
    };
    // Closing the last connection checkpoints the WAL into the file; the file is set aside
    // only once nothing of it is left in a WAL beside it.
    source.close().await;
    let identity = target.identity().await;
    target.close().await;
    let identity = identity?;
    let wal = data_dir.join("control.db-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Error::Config(format!(
            "copied, but {} still holds commits: start `silo serve` with the URL once this is resolved, \
             after renaming control.db to control.db.copied-to-postgres",
            wal.display()
        )));
    }
    // Marked first: a marker beside control.db still means control.db (a crash before the
    // rename leaves a data directory that opens as before), control.db gone without a
    // marker would not.
    crate::control::mark_data_dir(data_dir, &identity)?;
    let old = data_dir.join("control.db.copied-to-postgres");
    std::fs::rename(&path, &old)
        .map_err(|e| Error::Config(format!("cannot rename {} aside: {e}", path.display())))?;
    let _ = std::fs::remove_file(data_dir.join("control.db-wal"));
    let _ = std::fs::remove_file(data_dir.join("control.db-shm"));
    Ok(Copied { tables: copied, old_control_db: old })
}

/// The copy itself, in one transaction on `to`.
async fn copy(from: &SqlitePool, to: &PgPool) -> Result<Vec<(String, u64)>> {
    let tables = describe(to).await?;
    let source_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(from)
    .await?
    .into_iter()
    .collect();
    if let Some(missing) =
        source_tables.iter().find(|t| !tables.contains_key(*t) && !NOT_COPIED.contains(&t.as_str()))
    {
        return Err(Error::Config(format!(
            "control.db has a table `{missing}` the PostgreSQL schema lacks: is this binary older than the data directory?"
        )));
    }
    let order: Vec<String> =
        fill_order(&tables)?.into_iter().filter(|name| !NOT_COPIED.contains(&name.as_str())).collect();
    let mut tx = to.begin().await?;
    // Two copies into one database take turns: the second finds the first's rows.
    run(&mut tx, "tenants", "LOCK TABLE tenants IN EXCLUSIVE MODE".to_owned()).await?;
    for name in order.iter().filter(|name| !SEEDED.contains(&name.as_str())) {
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{name}\"")))
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            return Err(Error::Config(format!(
                "the PostgreSQL database is not empty (`{name}` has {count} rows): copy into an empty database. \
                 (Had a copy of this data directory into it committed before it was cut short, finish it by \
                 hand: rename control.db to control.db.copied-to-postgres and start `silo serve` with the URL.)"
            )));
        }
    }
    for name in &order {
        // The rows come as they are: the triggers that keep the history tables (a tenant's
        // plans, memberships) would add them twice.
        run(&mut tx, name, format!("ALTER TABLE \"{name}\" DISABLE TRIGGER USER")).await?;
    }
    // What the migrations seeded (the invoice counter's row) is replaced by control.db's.
    for name in order.iter().rev() {
        run(&mut tx, name, format!("DELETE FROM \"{name}\"")).await?;
    }
    let mut done = Vec::new();
    for name in order {
        let rows = copy_table(from, &mut tx, &name, &tables[&name]).await?;
        run(&mut tx, &name, format!("ALTER TABLE \"{name}\" ENABLE TRIGGER USER")).await?;
        done.push((name, rows));
    }
    tx.commit().await?;
    Ok(done)
}

/// Runs one statement of the copy about `table`.
async fn run(tx: &mut sqlx::Transaction<'_, Postgres>, table: &str, statement: String) -> Result<()> {
    sqlx::query(AssertSqlSafe(statement)).execute(&mut **tx).await.map_err(|e| copy_error(table, e))?;
    Ok(())
}

/// The tables of the target and their columns, keys and references.
async fn describe(to: &PgPool) -> Result<BTreeMap<String, Table>> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_identity::text
         FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.table_name <> '_sqlx_migrations' AND c.is_generated = 'NEVER'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(to)
    .await?;
    for (table, name, data_type, identity) in columns {
        let kind = Kind::of(&data_type).ok_or_else(|| {
            Error::Config(format!("{table}.{name} is of type {data_type}, which the copy does not know"))
        })?;
        tables.entry(table).or_default().columns.push(Column { name, kind, identity: identity == "YES" });
    }
    let references: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, a.attname::text
         FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(to)
    .await?;
    // Only the tables listed above (not sqlx's bookkeeping).
    for (table, referenced, column) in references {
        let (table, referenced) = (unquote(&table), unquote(&referenced));
        let Some(entry) = tables.get_mut(&table) else { continue };
        if referenced == table {
            entry.self_references.push(column);
        } else {
            entry.references.insert(referenced);
        }
    }
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indrelid::regclass::text, a.attname::text
         FROM pg_index i
         JOIN pg_class k ON k.oid = i.indrelid
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indisprimary AND k.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(to)
    .await?;
    for (table, column) in keys {
        if let Some(entry) = tables.get_mut(&unquote(&table)) {
            entry.primary_key.push(column);
        }
    }
    Ok(tables)
}

/// A `regclass` as text is quoted when it needs to be.
fn unquote(name: &str) -> String {
    name.trim_matches('"').to_owned()
}

/// The tables, each after every table it references.
fn fill_order(tables: &BTreeMap<String, Table>) -> Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    while placed.len() < tables.len() {
        let ready: Vec<&String> = tables
            .iter()
            .filter(|(name, table)| {
                !placed.contains(name.as_str())
                    && table.references.iter().all(|r| placed.contains(r.as_str()) || !tables.contains_key(r))
            })
            .map(|(name, _)| name)
            .collect();
        if ready.is_empty() {
            return Err(Error::Config("the control plane's tables reference each other in a circle".into()));
        }
        for name in ready {
            placed.insert(name);
            order.push(name.clone());
        }
    }
    Ok(order)
}

/// Copies one table; answers its rows.
async fn copy_table(
    from: &SqlitePool,
    tx: &mut sqlx::Transaction<'_, Postgres>,
    name: &str,
    table: &Table,
) -> Result<u64> {
    let quoted = |c: &str| format!("\"{c}\"");
    let list = table.columns.iter().map(|c| quoted(&c.name)).collect::<Vec<_>>().join(", ");
    let select = format!("SELECT {list} FROM \"{name}\"");
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(from);
    let column_of = |name: &str| table.columns.iter().position(|c| c.name == name);
    let later: Vec<usize> = table.self_references.iter().filter_map(|c| column_of(c)).collect();
    let key: Vec<usize> = table.primary_key.iter().filter_map(|c| column_of(c)).collect();
    if !later.is_empty() && key.len() != table.primary_key.len() {
        return Err(Error::Config(format!("`{name}` references itself but has no primary key to update by")));
    }
    let mut updates: Vec<(Value, Vec<Value>, usize)> = Vec::new();
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
    let mut copied = 0u64;
    let read_error = |e: sqlx::Error| Error::Config(format!("reading `{name}` from control.db: {e}"));
    loop {
        let row = rows.try_next().await.map_err(read_error)?;
        if let Some(row) = &row {
            let mut values = Vec::with_capacity(table.columns.len());
            for (index, column) in table.columns.iter().enumerate() {
                let value = Value::read(row, index, column.kind)
                    .map_err(|e| Error::Config(format!("`{name}`.`{}` in control.db: {e}", column.name)))?;
                values.push(value);
            }
            for &index in &later {
                // Filled once the whole table is in (it may name a row not copied yet).
                let value = std::mem::replace(&mut values[index], Value::null(table.columns[index].kind));
                if !value.is_null() {
                    let keys = key.iter().map(|&k| Value::read(row, k, table.columns[k].kind));
                    updates.push((value, keys.collect::<sqlx::Result<_>>().map_err(read_error)?, index));
                }
            }
            batch.push(values);
        }
        if batch.len() == BATCH || (row.is_none() && !batch.is_empty()) {
            copied += batch.len() as u64;
            insert(tx, name, table, std::mem::take(&mut batch)).await?;
        }
        if row.is_none() {
            break;
        }
    }
    // Its connection back to the pool (of one) for the count below.
    drop(rows);
    for (value, keys, index) in updates {
        let mut update = QueryBuilder::<Postgres>::new(format!(
            "UPDATE \"{name}\" SET \"{}\" = ",
            table.columns[index].name
        ));
        value.bind(&mut update);
        for (i, (key, value)) in table.primary_key.iter().zip(keys).enumerate() {
            update.push(format!("{} \"{key}\" = ", if i == 0 { " WHERE" } else { " AND" }));
            value.bind(&mut update);
        }
        update.build().execute(&mut **tx).await.map_err(|e| copy_error(name, e))?;
    }
    for column in table.columns.iter().filter(|c| c.identity) {
        let restart = format!(
            "SELECT setval(pg_get_serial_sequence('\"{name}\"', '{column}'), coalesce(max(\"{column}\"), 0) + 1, false) FROM \"{name}\"",
            column = column.name
        );
        sqlx::query(AssertSqlSafe(restart)).execute(&mut **tx).await.map_err(|e| copy_error(name, e))?;
    }
    let source: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{name}\"")))
        .fetch_one(from)
        .await
        .map_err(read_error)?;
    let target: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{name}\"")))
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| copy_error(name, e))?;
    if source != target || target as u64 != copied {
        return Err(Error::Config(format!(
            "`{name}`: control.db has {source} rows, PostgreSQL {target} after the copy"
        )));
    }
    Ok(copied)
}

/// Inserts `rows` into `name` in one statement.
async fn insert(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    name: &str,
    table: &Table,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let list = table.columns.iter().map(|c| format!("\"{}\"", c.name)).collect::<Vec<_>>().join(", ");
    let overriding = if table.columns.iter().any(|c| c.identity) { " OVERRIDING SYSTEM VALUE" } else { "" };
    let mut insert = QueryBuilder::<Postgres>::new(format!("INSERT INTO \"{name}\" ({list}){overriding} "));
    insert.push("VALUES ");
    for (i, row) in rows.into_iter().enumerate() {
        insert.push(if i == 0 { "(" } else { ", (" });
        for (j, value) in row.into_iter().enumerate() {
            if j > 0 {
                insert.push(", ");
            }
            value.bind(&mut insert);
        }
        insert.push(")");
    }
    insert.build().execute(&mut **tx).await.map_err(|e| copy_error(name, e))?;
    Ok(())
}

fn copy_error(table: &str, e: sqlx::Error) -> Error {
    Error::Config(format!("copying `{table}` into PostgreSQL: {e}"))
}
