//! Read-only SQL on a tenant file, for operators (`silo tenant sql`).
//!
//! The query runs on the file's owning connection (`HandleCache::with_file`) under
//! [`sqlite::guard_reader`]: `PRAGMA query_only`, and an authorizer that allows only reads of
//! the tenant's own `main` database, both lifted when the query ends. `query_only` is not
//! enough on its own: `VACUUM INTO` writes a plaintext copy anywhere and `ATTACH` reads any
//! other file, such as another tenant's; both are refused, as is any statement SQLite does not
//! call read-only.

use serde::Serialize;
use silo_storage::sqlite;

use crate::control::TenantStatus;
use crate::{Error, Result, Tenancy};
use silo_core::ids::TenantRef;

/// Rows of a read-only query.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as JSON values (blobs as hex strings).
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Read-only SQL over one tenant file (operators) (from [`Tenancy::queries`]).
#[derive(Clone)]
pub struct Queries(pub(crate) Tenancy);

impl Queries {
    /// Runs `sql` read-only on a tenant's file (any status but purged).
    pub async fn read_only(&self, tenant: &TenantRef, sql: &str) -> Result<QueryResult> {
        let tenant = self.0.tenant(tenant).await?;
        if tenant.status == TenantStatus::Deleted {
            return Err(Error::Gone(tenant.slug.to_string()));
        }
        let path = self.0.tenant_path(&tenant)?;
        let sql = sql.to_owned();
        let id = tenant.id.to_string();
        let result = self
            .0
            .cache()
            .with_file(tenant.id, path, move |conn| {
                let _guard = sqlite::guard_reader(conn)?;
                run(conn, &sql)
            })
            .await;
        result.map_err(|e| match e {
            Error::Storage(silo_storage::Error::FileMissing(path)) => Error::FileMissing { tenant: id, path },
            other => other,
        })
    }
}

fn run(conn: &rusqlite::Connection, sql: &str) -> Result<QueryResult> {
    let mut statement = sqlite::prepare_guarded(conn, sql).map_err(|e| match e {
        silo_storage::Error::NotReadOnly(reason) => Error::WriteRefused(format!(
            "{reason}: `silo tenant sql` runs one statement that only reads this tenant's own database"
        )),
        other => other.into(),
    })?;
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = statement.query([])?;
    while let Some(row) = cursor.next()? {
        rows.push(
            (0..width)
                .map(|i| row.get_ref(i).map(crate::export::json_value))
                .collect::<rusqlite::Result<_>>()?,
        );
    }
    Ok(QueryResult { columns, rows })
}
