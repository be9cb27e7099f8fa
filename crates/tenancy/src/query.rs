//! Read-only SQL on a tenant file, for operators (`silo tenant sql`).
//!
//! The query runs on a connection opened with `SQLITE_OPEN_READONLY`, so no statement — not
//! even one that first turns `query_only` off — can change the file.

use serde::Serialize;
use silo_storage::sqlite::{self, OpenMode};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, TypeInfo, ValueRef};

use crate::control::TenantStatus;
use crate::ids::TenantRef;
use crate::{Error, Result, Tenancy};

/// Rows of a read-only query.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as JSON values (blobs as hex strings).
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl Tenancy {
    /// Runs `sql` read-only on a tenant's file (any status but purged).
    pub async fn query_readonly(&self, tenant: &TenantRef, sql: &str) -> Result<QueryResult> {
        let tenant = self.tenant(tenant).await?;
        if tenant.status == TenantStatus::Deleted {
            return Err(Error::Gone(tenant.slug));
        }
        let path = self.tenant_path(&tenant)?;
        let mut conn = sqlite::open(&path, self.settings().tenant_tuning(), OpenMode::ReadOnly)
            .await
            .map_err(|e| match e {
                silo_storage::Error::FileMissing(path) => {
                    Error::FileMissing { tenant: tenant.id.to_string(), path }
                }
                other => other.into(),
            })?;
        // Operators type arbitrary SQL on purpose; the read-only connection is the guard.
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut conn).await.map_err(refuse_writes)?;
        let columns = match rows.first() {
            Some(row) => row.columns().iter().map(|c| c.name().to_owned()).collect(),
            None => conn
                .describe(AssertSqlSafe(sql).into_sql_str())
                .await
                .map_err(refuse_writes)?
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
        };
        conn.close().await?;
        let rows = rows.iter().map(row_to_json).collect();
        Ok(QueryResult { columns, rows })
    }
}

/// SQLITE_READONLY (8) means the statement tried to write.
fn refuse_writes(error: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &error
        && db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 8)
    {
        return Error::WriteRefused(
            "the statement would change the database; `silo tenant sql` only reads".to_owned(),
        );
    }
    Error::Database(error)
}

fn row_to_json(row: &SqliteRow) -> Vec<serde_json::Value> {
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return serde_json::Value::Null;
            };
            if raw.is_null() {
                return serde_json::Value::Null;
            }
            match raw.type_info().name() {
                "INTEGER" => row.try_get_unchecked::<i64, _>(i).map(Into::into).unwrap_or_default(),
                "REAL" => row.try_get_unchecked::<f64, _>(i).map(Into::into).unwrap_or_default(),
                "BLOB" => row
                    .try_get_unchecked::<Vec<u8>, _>(i)
                    .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>().into())
                    .unwrap_or_default(),
                _ => row.try_get_unchecked::<String, _>(i).map(Into::into).unwrap_or_default(),
            }
        })
        .collect()
}
