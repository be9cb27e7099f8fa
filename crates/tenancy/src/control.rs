//! The control plane: `control.db` (or a PostgreSQL database, `[control] url`), the table of
//! tenants and the audit log.
//!
//! Reads go through a small pool; writes go through a one-connection pool so they never
//! contend inside the process (SQLite has one writer anyway), and every lifecycle change
//! writes its audit entry in the same transaction. The few point reads a request makes on a
//! directory miss run inline on rusqlite instead ([`inline`]). On PostgreSQL one pool serves
//! both, write transactions take their turn through an advisory lock ([`silo_core::db`]), and
//! the point reads go through the pool (its driver runs on the runtime: no thread to hop to).

mod inline;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use silo_storage::RegionName;

use crate::ownership::Ownership;
use crate::{Error, Members, Result};
use silo_core::db::{self, Db};
use silo_core::ids::{TenantId, TenantRef, TenantSlug};
use silo_core::time::Timestamp;

/// Whether a writer connection given back to the pool is out of every transaction, as sqlx
/// counts them. When a statement fails with `SQLITE_FULL` or an I/O error, SQLite may roll the
/// transaction back by itself; sqlx's `ROLLBACK` then fails and it keeps counting one open, so
/// its next `begin` only opens a savepoint and every later write of the connection would sit
/// in a transaction that never commits. Such a connection is closed (the pool opens a fresh
/// one) instead of being reused. The count is read after the queued rollback of a dropped
/// transaction has run (`lock_handle` waits for the connection's worker).
async fn transaction_settled(conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return true;
    }
    if conn.lock_handle().await.is_err() {
        return false;
    }
    let settled = !conn.is_in_transaction();
    if !settled {
        tracing::warn!(
            "a control-plane connection was left inside a failed transaction; it is closed and replaced"
        );
    }
    settled
}

pub use silo_core::time::{utc_now, utc_timestamp};

/// The file in a data directory that says its control plane is on PostgreSQL: a process
/// started on it without `[control] url` would otherwise make an empty `control.db` and serve
/// the tenants' files as if nobody had them.
const ON_POSTGRES: &str = "control-plane";

/// Refuses a data directory whose control plane is elsewhere than the settings say: on
/// PostgreSQL (its marker) when `url` is not given, or in `control.db` when it is.
pub(crate) fn check_data_dir(data_dir: &Path, url: bool) -> Result<()> {
    let marked = data_dir.join(ON_POSTGRES).exists();
    let embedded = data_dir.join("control.db").exists();
    if !url && marked && !embedded {
        return Err(Error::Config(format!(
            "the control plane of {} is on PostgreSQL ({ON_POSTGRES} says so): set [control] url (SILO_CONTROL__URL)",
            data_dir.display()
        )));
    }
    if url && embedded {
        return Err(Error::Config(format!(
            "{} has its control plane in control.db, and [control] url names PostgreSQL: unset it, \
             or copy this control plane there first (`silo control copy-to-postgres`, the server stopped)",
            data_dir.display()
        )));
    }
    Ok(())
}

/// The line of the marker that names which control plane the data directory belongs to.
const INSTALLED: &str = "installed = ";

/// Records in the data directory that its control plane is on PostgreSQL, and which one:
/// `identity` ([`ControlPlane::identity`]). A marker of an older version, without it, gets it.
pub(crate) fn mark_data_dir(data_dir: &Path, identity: &str) -> Result<()> {
    let marker = data_dir.join(ON_POSTGRES);
    if marked_identity(data_dir).as_deref() == Some(identity) {
        return Ok(());
    }
    let text =
        format!("postgresql: this data directory's control plane is [control] url\n{INSTALLED}{identity}\n");
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&marker, text))
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", marker.display())))
}

/// Which PostgreSQL control plane the data directory belongs to, when its marker says.
pub(crate) fn marked_identity(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(ON_POSTGRES)).ok()?;
    text.lines().find_map(|line| line.strip_prefix(INSTALLED)).map(|id| id.trim().to_owned())
}

/// A tenant's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Serving.
    Active,
    /// Closed to its users by an operator; the file is kept.
    Suspended,
    /// Soft-deleted: closed, file kept until purged.
    Deleting,
    /// Purged: the file is gone.
    Deleted,
}

impl TenantStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }
}

impl TenantStatus {
    /// Active or suspended: its file exists and is backed up.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Suspended)
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for TenantStatus {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        stored.parse()
    }
}

impl FromStr for TenantStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "deleting" => Ok(Self::Deleting),
            "deleted" => Ok(Self::Deleted),
            other => Err(Error::invalid(
                "status",
                format!("unknown status `{other}` (expected active, suspended, deleting or deleted)"),
            )),
        }
    }
}

/// A row of `tenants` (also the API's view of a tenant).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Identity (UUID v7).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[sqlx(try_from = "String")]
    pub id: TenantId,
    /// URL name.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[sqlx(try_from = "String")]
    pub slug: TenantSlug,
    /// Display name.
    pub name: String,
    /// Lifecycle status.
    #[sqlx(try_from = "String")]
    pub status: TenantStatus,
    /// Region whose root holds the file.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[sqlx(try_from = "String")]
    pub region: RegionName,
    /// Billing plan.
    pub plan: String,
    /// Highest tenant migration applied.
    pub schema_version: i64,
    /// Why the tenant is quarantined, if it is.
    pub migration_error: Option<String>,
    /// Creation time (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    /// Last change (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub updated_at: Timestamp,
    /// Purge time (UTC).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub deleted_at: Option<Timestamp>,
    /// A backup restored as this new tenant, held for an operator: suspended and shown to none
    /// of its members (nor blocking their accounts' deletion) until released by a resume.
    pub held: bool,
}

impl Tenant {
    pub(crate) fn from_row(row: &db::Row) -> Result<Self> {
        Ok(row.decode::<Self>()?)
    }

    /// The same row read by rusqlite ([`ControlPlane::tenant_inline`]).
    fn from_rusqlite(row: &rusqlite::Row<'_>) -> Result<Self> {
        Ok(Self {
            id: row.get::<_, String>("id")?.try_into()?,
            slug: row.get::<_, String>("slug")?.try_into()?,
            name: row.get("name")?,
            status: row.get::<_, String>("status")?.try_into()?,
            region: row.get::<_, String>("region")?.try_into()?,
            plan: row.get("plan")?,
            schema_version: row.get("schema_version")?,
            migration_error: row.get("migration_error")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            deleted_at: row.get("deleted_at")?,
            held: row.get("held")?,
        })
    }
}

/// The statement and key that find `tenant`.
fn tenant_query(tenant: &TenantRef) -> (&'static str, String) {
    match tenant {
        TenantRef::Id(id) => (TENANT_BY_ID, id.to_string()),
        TenantRef::Slug(slug) => (TENANT_BY_SLUG, slug.as_str().to_owned()),
    }
}

/// A tenant by id.
const TENANT_BY_ID: &str = "SELECT * FROM tenants WHERE id = ?";
/// A tenant by slug: the live one, or the latest purged one.
const TENANT_BY_SLUG: &str =
    "SELECT * FROM tenants WHERE slug = ? ORDER BY status = 'deleted', created_at DESC LIMIT 1";

/// A tenant about to be inserted.
#[derive(Clone, Debug)]
pub struct NewTenant {
    /// Its id (and so its path).
    pub id: TenantId,
    /// Its slug.
    pub slug: TenantSlug,
    /// Display name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Plan.
    pub plan: String,
    /// Schema version of the provisioned file.
    pub schema_version: i64,
}

/// Filters of [`ControlPlane::list`].
#[derive(Clone, Debug, Default)]
pub struct TenantFilter {
    /// Only this status.
    pub status: Option<TenantStatus>,
    /// Only this region.
    pub region: Option<String>,
}

/// The admin console's tenant list: search, filters, sort and page.
#[derive(Clone, Debug, Default)]
pub struct TenantQuery {
    /// Part of the slug or of the name (case-insensitive).
    pub search: Option<String>,
    /// Only this status.
    pub status: Option<TenantStatus>,
    /// Only this region.
    pub region: Option<String>,
    /// Only this plan.
    pub plan: Option<String>,
    /// Order.
    pub sort: TenantSort,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// Orders of [`TenantQuery`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(rename_all = "lowercase"))]
pub enum TenantSort {
    /// By slug.
    #[default]
    Slug,
    /// By name.
    Name,
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
}

impl TenantSort {
    /// Parses the query-string name (`slug`, `name`, `newest`, `oldest`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "slug" => Some(Self::Slug),
            "name" => Some(Self::Name),
            "newest" => Some(Self::Newest),
            "oldest" => Some(Self::Oldest),
            _ => None,
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Slug => "slug, created_at",
            // NOCASE: SQLite's folds ASCII letters only; PostgreSQL's (`nocase`, ICU) also folds
            // accents, so names beyond ASCII may sort a little differently between the two.
            Self::Name => "name COLLATE NOCASE, slug",
            // rowid breaks ties between tenants created in the same millisecond, so pages
            // neither skip nor repeat one (SQLite's index on created_at holds it already).
            Self::Newest => "created_at DESC, rowid DESC",
            Self::Oldest => "created_at, rowid",
        }
    }
}

pub use silo_core::audit::AuditEntry;

/// The outcome of migrating one tenant, as recorded in the control plane.
#[derive(Clone, Debug)]
pub struct MigrationRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// Its schema version after the attempt.
    pub schema_version: Option<i64>,
    /// The failure, or `None` on success (clears a quarantine).
    pub error: Option<String>,
}

/// Handle to `control.db`.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    read: Db,
    write: Db,
    /// `None` on PostgreSQL.
    inline: Option<Arc<inline::InlineReaders>>,
    clock: silo_core::ProcessClock,
    /// This server's tenants, once it owns tenants (`silo serve` on PostgreSQL; see
    /// [`crate::ownership`]). Shared by every clone.
    ownership: Arc<std::sync::OnceLock<Arc<Ownership>>>,
}

impl ControlPlane {
    /// Opens (creating if needed) `control.db` and applies `migrations` (the application's
    /// sequence: [`crate::Schema::control`]). Every "now" its statements store or compare comes
    /// from `clock`, bound as a parameter.
    pub async fn open(
        path: &Path,
        migrations: &sqlx::migrate::Migrator,
        clock: silo_core::ProcessClock,
    ) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Config(format!("cannot create data directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("trusted_schema", "OFF")
            // Deleted rows (a purged tenant's wrapped data key, a sent email's sealed link) are
            // overwritten with zeros, not left in free pages for a copy of the file to keep.
            .pragma("secure_delete", "ON")
            .disable_statement_logging();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { Ok(transaction_settled(conn).await) }))
            .connect_with(options.clone())
            .await?;
        migrations.run(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        let (read, write) = (Db::Sqlite(read), Db::Sqlite(write));
        let inline = Some(Arc::new(inline::InlineReaders::new(path)));
        Ok(Self { read, write, inline, clock, ownership: Arc::default() })
    }

    /// Connects to the control plane on PostgreSQL at `url` (at most `connections`
    /// connections) and applies `migrations` (the application's PostgreSQL sequence:
    /// [`crate::Schema::control_postgres`]).
    pub async fn open_postgres(
        url: &silo_core::Secret,
        connections: u32,
        migrations: &sqlx::migrate::Migrator,
        clock: silo_core::ProcessClock,
        belongs: Option<&str>,
    ) -> Result<Self> {
        let db = Db::postgres(url.expose(), connections.max(2)).await.map_err(|e| {
            Error::Config(format!(
                "cannot reach the control plane's PostgreSQL ([control] url): {}",
                Db::explain(&e)
            ))
        })?;
        // A database that holds other tables is someone else's: migrating into it would stop
        // half-way at the first name they share.
        let foreign: i64 = db::query_scalar(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND to_regclass('_sqlx_migrations') IS NULL",
        )
        .fetch_one(&db)
        .await?;
        if foreign > 0 {
            return Err(Error::Config(
                "the database [control] url names already holds tables and is not a Silo control plane: \
                 give Silo an empty database"
                    .into(),
            ));
        }
        // A data directory serves the control plane it was first started on: another (a typo in
        // the URL, another installation's database) would show an empty installation, or
        // another's, beside these tenant files. Checked before migrating anything there.
        if let Some(expected) = belongs {
            let found = Self::identity_in(&db).await?;
            if found.as_deref() != Some(expected) {
                return Err(Error::Config(format!(
                    "[control] url names {}, not this data directory's control plane (installed {expected}, as \
                     its `{ON_POSTGRES}` file says): check the URL; a data directory serves one control plane",
                    found.map_or("an empty database".to_owned(), |found| format!(
                        "a control plane installed {found}"
                    ))
                )));
            }
        }
        db.migrate(migrations).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                Error::Config(format!(
                    "cannot set up the control plane in PostgreSQL ([control] url): {}",
                    Db::explain(&e)
                ))
            }
            other => other.into(),
        })?;
        Ok(Self { read: db.clone(), write: db, inline: None, clock, ownership: Arc::default() })
    }

    /// Which PostgreSQL control plane this is: when its first migration was applied (kept by
    /// `pg_dump` and restores, new for every other database).
    pub async fn identity(&self) -> Result<String> {
        Self::identity_in(&self.read)
            .await?
            .ok_or_else(|| Error::Config("the control plane has no migrations applied".into()))
    }

    /// When this PostgreSQL control plane was installed (its first migration), in ms since
    /// the Unix epoch.
    pub async fn installed_ms(&self) -> Result<i64> {
        Ok(db::query_scalar(
            "SELECT CAST(extract(epoch FROM installed_on) * 1000 AS BIGINT) FROM _sqlx_migrations WHERE version = 1",
        )
        .fetch_one(&self.read)
        .await?)
    }

    async fn identity_in(db: &Db) -> Result<Option<String>> {
        let migrated: bool =
            db::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(db).await?;
        if !migrated {
            return Ok(None);
        }
        // In UTC with an explicit format: the same text whatever the session's TimeZone and
        // DateStyle.
        Ok(db::query_scalar(
            "SELECT to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             FROM _sqlx_migrations WHERE version = 1",
        )
        .fetch_optional(db)
        .await?)
    }

    /// Whether the control plane is the embedded `control.db` (not PostgreSQL).
    pub fn is_embedded(&self) -> bool {
        self.inline.is_some()
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so what was deleted
    /// (with `secure_delete`, zeroed in the database) survives in no old WAL frame either.
    /// Retries while readers hold an older snapshot; returns whether the WAL is now empty.
    ///
    /// On PostgreSQL there is no file of ours to truncate: the server's own WAL and free
    /// space hold deleted rows until they are recycled and vacuumed (its operator's setting);
    /// `true`, as there is nothing here left to do.
    pub async fn checkpoint_truncate(&self) -> Result<bool> {
        if !self.is_embedded() {
            return Ok(true);
        }
        for attempt in 0..50 {
            let (busy, _, _): (i64, i64, i64) =
                db::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.write).await?;
            if busy == 0 {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(10 * (attempt + 1))).await;
        }
        tracing::warn!(
            "control.db checkpoint stayed busy (readers): the WAL keeps old frames until the next one"
        );
        Ok(false)
    }

    /// Checks that the control plane answers.
    pub async fn ping(&self) -> Result<()> {
        db::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Looks a tenant up by slug or id. A slug finds the live tenant, or the latest purged one.
    pub async fn tenant(&self, tenant: &TenantRef) -> Result<Tenant> {
        let (sql, key) = tenant_query(tenant);
        let row = db::query(sql).bind(key).fetch_optional(&self.read).await?;
        row.map(|r| Tenant::from_row(&r)).transpose()?.ok_or_else(|| Error::NotFound(tenant.to_string()))
    }

    /// [`ControlPlane::tenant`] for a request's lookup that the directory cannot answer: on
    /// `control.db` read on the calling thread ([`inline`]), on PostgreSQL through the pool.
    pub async fn tenant_inline(&self, tenant: &TenantRef) -> Result<Tenant> {
        let Some(inline) = &self.inline else { return self.tenant(tenant).await };
        let (sql, key) = tenant_query(tenant);
        inline
            .read(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query([key])?;
                rows.next()?.map(Tenant::from_rusqlite).transpose()
            })?
            .ok_or_else(|| Error::NotFound(tenant.to_string()))
    }

    /// Runs a short read on `control.db` on the calling thread ([`inline`]): the point reads
    /// behind the [directory](crate::directory)'s answers, which requests wait for. `None` on
    /// PostgreSQL, where the caller runs the same statement through [`ControlPlane::reader`].
    pub fn read_inline<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<Result<T>> {
        self.inline.as_ref().map(|inline| inline.read(|conn| Ok(f(conn)?)))
    }

    /// Looks a tenant up by id.
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<Tenant> {
        self.tenant(&TenantRef::Id(id)).await
    }

    /// The tenants with these ids (as stored: the UUID's text), whatever their status, by id;
    /// ids no tenant has are left out. The crates above join their own rows to tenants
    /// through this rather than in SQL: `tenants` is this crate's table.
    pub async fn tenants_by_ids(&self, ids: &[String]) -> Result<std::collections::HashMap<String, Tenant>> {
        let rows = db::query("SELECT * FROM tenants WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(serde_json::json!(ids).to_string())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Tenant::from_row(row).map(|t| (t.id.to_string(), t))).collect()
    }

    /// Lists tenants, ordered by slug.
    pub async fn list(&self, filter: &TenantFilter) -> Result<Vec<Tenant>> {
        let rows = db::query(
            "SELECT * FROM tenants WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR region = ?2) ORDER BY slug, created_at",
        )
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.region.as_deref())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Tenant::from_row).collect()
    }

    /// One page of the admin console's tenant list and the number of matching tenants.
    ///
    /// The statement names only the filters given, so SQLite can use the indexes on slug,
    /// name, status, region and plan; a search matches any part of the slug or the name
    /// (case-insensitive), a scan of the table (measured by `silo-bench admin`).
    pub async fn search(&self, query: &TenantQuery) -> Result<(Vec<Tenant>, i64)> {
        let search = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let mut filter = String::from("WHERE TRUE");
        let mut values: Vec<String> = Vec::new();
        if let Some(term) = search {
            // Any part of the slug or the name (a scan: the console's and the API's search,
            // not a request's path).
            let low = term.to_lowercase();
            filter.push_str(" AND (instr(slug, ?) > 0 OR instr(lower(name), ?) > 0)");
            values.extend([low.clone(), low]);
        }
        for (clause, value) in [
            (" AND status = ?", query.status.map(|s| s.as_str().to_owned())),
            (" AND region = ?", query.region.clone()),
            (" AND plan = ?", query.plan.clone()),
        ] {
            if let Some(value) = value {
                filter.push_str(clause);
                values.push(value);
            }
        }
        let select =
            format!("SELECT * FROM tenants {filter} ORDER BY {} LIMIT ? OFFSET ?", query.sort.order_by());
        let mut rows = db::query(sqlx::AssertSqlSafe(select));
        for value in &values {
            rows = rows.bind(value);
        }
        let rows = rows.bind(query.limit).bind(query.offset).fetch_all(&self.read).await?;
        let mut count =
            db::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM tenants {filter}")));
        for value in &values {
            count = count.bind(value);
        }
        let total: i64 = count.fetch_one(&self.read).await?;
        Ok((rows.iter().map(Tenant::from_row).collect::<Result<_>>()?, total))
    }

    /// Live tenants per schema version (the fleet view's histogram).
    pub async fn schema_histogram(&self) -> Result<Vec<(i64, i64)>> {
        Ok(db::query_as(
            "SELECT schema_version, count(*) FROM tenants WHERE status IN ('active', 'suspended')
             GROUP BY schema_version ORDER BY schema_version",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Tenants per status.
    pub async fn status_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(db::query_as("SELECT status, count(*) FROM tenants GROUP BY status ORDER BY status")
            .fetch_all(&self.read)
            .await?)
    }

    /// Quarantined tenants (a failed migration or open), at most `limit`.
    pub async fn quarantined(&self, limit: i64) -> Result<Vec<Tenant>> {
        let rows = db::query(
            "SELECT * FROM tenants WHERE migration_error IS NOT NULL AND status <> 'deleted' ORDER BY slug LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Tenant::from_row).collect()
    }

    /// The audit log, newest first: `limit` entries older than `before`, optionally only
    /// actions starting with `action`.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        Ok(silo_core::audit::page(&self.read, before, action, limit).await?)
    }

    /// Renames a tenant (its display name), audited.
    pub async fn rename(&self, id: TenantId, name: &str, actor: &str) -> Result<Tenant> {
        let name = display_name(name)?;
        let now = self.now();
        let mut tx = self.write.begin().await?;
        db::query("UPDATE tenants SET name = ?, updated_at = ? WHERE id = ?")
            .bind(name)
            .bind(now.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "tenant.rename",
            Some(id),
            &serde_json::json!({ "name": name }),
        )
        .await?;
        let tenant = fetch_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Changes a tenant's plan, audited.
    pub async fn set_plan(&self, id: TenantId, plan: &str, actor: &str) -> Result<Tenant> {
        let plan = plan.trim();
        if plan.is_empty() || plan.len() > 40 || !plan.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::invalid("plan", "a plan name is 1 to 40 letters, digits or dashes"));
        }
        let now = self.now();
        let mut tx = self.write.begin().await?;
        db::query("UPDATE tenants SET plan = ?, updated_at = ? WHERE id = ?")
            .bind(plan)
            .bind(now.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "tenant.plan",
            Some(id),
            &serde_json::json!({ "plan": plan }),
        )
        .await?;
        let tenant = fetch_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// The live tenants (active and suspended: their files exist and may be migrated), by id.
    pub async fn live(&self) -> Result<Vec<Tenant>> {
        let rows = db::query("SELECT * FROM tenants WHERE status IN ('active', 'suspended') ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(Tenant::from_row).collect()
    }

    /// The tenants that existed at some moment in `[start, end)` — created before `end`, not
    /// deleted before `start` — ordered by slug (a month's billing run).
    pub async fn existing_during(&self, start: &str, end: &str) -> Result<Vec<Tenant>> {
        let rows = db::query(
            "SELECT * FROM tenants WHERE created_at < ?2 AND (deleted_at IS NULL OR deleted_at >= ?1)
             ORDER BY slug, id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Tenant::from_row).collect()
    }

    /// Whether a live tenant holds this slug.
    pub async fn slug_taken(&self, slug: &TenantSlug) -> Result<bool> {
        let taken: Option<bool> =
            db::query_scalar("SELECT TRUE FROM tenants WHERE slug = ? AND status <> 'deleted'")
                .bind(slug.as_str())
                .fetch_optional(&self.read)
                .await?;
        Ok(taken.is_some())
    }

    /// Inserts a provisioned tenant and its audit entry in one transaction, with its first
    /// member (`(owner of memberships, user id, role)`) when given.
    pub async fn insert_tenant(
        &self,
        new: &NewTenant,
        founder: Option<(&dyn Members, &str, &str)>,
        actor: &str,
    ) -> Result<Tenant> {
        let now = self.now();
        let mut tx = self.write.begin().await?;
        insert_tenant_in(&mut tx, &now, new, actor).await?;
        self.claim_in(&mut tx, new.id).await?;
        if let Some((members, user_id, role)) = founder {
            members.add_founder(&mut tx, &now, new.id, user_id, role).await?;
            let detail = serde_json::json!({ "user": user_id, "role": role });
            silo_core::audit::record(&mut tx, &now, actor, "member.add", Some(new.id), &detail).await?;
        }
        let tenant = fetch_in(&mut tx, new.id).await?;
        tx.commit().await?;
        self.claimed(new.id);
        Ok(tenant)
    }

    /// This server's tenants, when it owns tenants (see [`crate::ownership`]).
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.ownership.get()
    }

    /// From now on this server owns tenants (once, at `silo serve`'s start on PostgreSQL).
    pub(crate) fn set_ownership(&self, ownership: Arc<Ownership>) {
        let _ = self.ownership.set(ownership);
    }

    /// A tenant provisioned here belongs to this server, in the transaction that inserts it.
    async fn claim_in(&self, tx: &mut db::Tx, id: TenantId) -> Result<()> {
        if let Some(ownership) = self.ownership() {
            db::query("INSERT INTO tenant_owners (tenant_id, node, fence) VALUES (?1, ?2, 1)")
                .bind(id.to_string())
                .bind(ownership.node())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// After [`ControlPlane::claim_in`] committed.
    fn claimed(&self, id: TenantId) {
        if let Some(ownership) = self.ownership() {
            ownership.settle(id, 1);
        }
    }

    /// Inserts a tenant restored from `source`'s backup, with `source`'s members (copied by
    /// `members`), in one transaction. Every process of the application registers the owner of
    /// memberships (`silo serve` and each CLI command build the accounts); only the fleet used
    /// alone — its own tests and benches, where no account exists — has none, and nothing to
    /// copy.
    pub async fn insert_clone(
        &self,
        new: &NewTenant,
        source: TenantId,
        backup: &str,
        members: Option<&dyn Members>,
        actor: &str,
    ) -> Result<Tenant> {
        let now = self.now();
        let mut tx = self.write.begin().await?;
        insert_tenant_in(&mut tx, &now, new, actor).await?;
        self.claim_in(&mut tx, new.id).await?;
        // Held until an operator releases it: its members are copied (an erasure of one of
        // them must reach this file too), but they see nothing of it meanwhile.
        db::query("UPDATE tenants SET status = 'suspended', held = TRUE WHERE id = ?")
            .bind(new.id.to_string())
            .execute(&mut *tx)
            .await?;
        if let Some(members) = members {
            members.copy(&mut tx, source, new.id).await?;
        }
        let detail = serde_json::json!({ "from_tenant": source, "backup": backup });
        silo_core::audit::record(&mut tx, &now, actor, "tenant.restore", Some(new.id), &detail).await?;
        let tenant = fetch_in(&mut tx, new.id).await?;
        tx.commit().await?;
        self.claimed(new.id);
        Ok(tenant)
    }

    /// Records that a deleting tenant was deleted by its owner (see [`Self::deleted_by_owner`]).
    pub async fn mark_deleted_by_owner(&self, id: TenantId) -> Result<()> {
        db::query("UPDATE tenants SET deleted_by_owner = TRUE WHERE id = ? AND status = 'deleting'")
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Whether a deleting tenant was deleted by its owner (who may then bring it back) rather
    /// than by the operators.
    pub async fn deleted_by_owner(&self, id: TenantId) -> Result<bool> {
        let by_owner: Option<bool> = db::query_scalar("SELECT deleted_by_owner FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(by_owner.unwrap_or(false))
    }

    /// The status a deleting tenant had when it was deleted (active when not recorded).
    pub async fn status_before_delete(&self, id: TenantId) -> Result<TenantStatus> {
        let before: Option<String> = db::query_scalar("SELECT deleted_from FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?
            .flatten();
        Ok(before.and_then(|s| s.try_into().ok()).unwrap_or(TenantStatus::Active))
    }

    /// Moves a tenant from one of `from` to `to`, with an audit entry, in one transaction.
    pub async fn transition(
        &self,
        id: TenantId,
        from: &[TenantStatus],
        to: TenantStatus,
        actor: &str,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<Tenant> {
        let now = self.now();
        let mut tx = self.write.begin().await?;
        let current = fetch_in(&mut tx, id).await?;
        if !from.contains(&current.status) {
            return Err(Error::InvalidTransition {
                tenant: current.slug.to_string(),
                // The words (`resume`), not the audit log's name for it (`tenant.resume`).
                action: action.strip_prefix("tenant.").unwrap_or(action),
                status: current.status.to_string(),
            });
        }
        // Resumed, a held restore is released; deleted, the status it had is kept for an
        // undelete (`status` on the right is the row's value before this change).
        db::query(
            "UPDATE tenants SET status = ?1, updated_at = ?3,
                 deleted_at = CASE WHEN ?1 = 'deleted' THEN ?3 ELSE deleted_at END,
                 held = CASE WHEN ?1 = 'active' THEN FALSE ELSE held END,
                 deleted_from = CASE WHEN ?1 = 'deleting' THEN status ELSE deleted_from END,
                 deleted_by_owner = CASE WHEN ?1 = 'deleting' THEN FALSE ELSE deleted_by_owner END
             WHERE id = ?2",
        )
        .bind(to.as_str())
        .bind(id.to_string())
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        silo_core::audit::record(&mut tx, &now, actor, action, Some(id), &detail).await?;
        let tenant = fetch_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Records migration outcomes (schema version, quarantine) in one transaction. A failure
    /// keeps the previous schema version and sets `migration_error`; a success clears it.
    pub async fn record_migrations(&self, records: &[MigrationRecord]) -> Result<()> {
        let now = self.now();
        let mut tx = self.write.begin().await?;
        for record in records {
            db::query(
                "UPDATE tenants SET schema_version = coalesce(?, schema_version), migration_error = ?, updated_at = ?
                 WHERE id = ?",
            )
            .bind(record.schema_version)
            .bind(&record.error)
            .bind(now.as_str())
            .bind(record.tenant.to_string())
            .execute(&mut *tx)
            .await?;
            if let Some(error) = &record.error {
                let detail = serde_json::json!({ "error": error });
                silo_core::audit::record(
                    &mut tx,
                    &now,
                    "system",
                    "tenant.quarantine",
                    Some(record.tenant),
                    &detail,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries of one tenant, newest first.
    pub async fn audit_entries(&self, id: TenantId, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(silo_core::audit::of_tenant(&self.read, id, limit).await?)
    }

    /// Now, on the process's clock: what statements bind where they store or compare the time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The process's clock.
    pub fn clock(&self) -> &silo_core::ProcessClock {
        &self.clock
    }

    /// The read pool (the control-plane repositories of this crate and of `silo-accounts`).
    pub fn reader(&self) -> &db::Db {
        &self.read
    }

    /// The audit entries about a person: done by `actor` (their email) or naming their account
    /// id as `user` in the detail.
    pub async fn audit_about(&self, actor: &str, user_id: &str) -> Result<Vec<AuditEntry>> {
        Ok(silo_core::audit::about(&self.read, actor, user_id).await?)
    }

    /// The one-connection write pool.
    pub fn writer(&self) -> &db::Db {
        &self.write
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

async fn insert_tenant_in(tx: &mut db::Tx, now: &Timestamp, new: &NewTenant, actor: &str) -> Result<()> {
    let inserted = db::query(
        "INSERT INTO tenants (id, slug, name, status, region, plan, schema_version, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7, ?7)",
    )
    .bind(new.id.to_string())
    .bind(new.slug.as_str())
    .bind(&new.name)
    .bind(&new.region)
    .bind(&new.plan)
    .bind(new.schema_version)
    .bind(now.as_str())
    .execute(&mut **tx)
    .await;
    if let Err(sqlx::Error::Database(e)) = &inserted
        && e.is_unique_violation()
    {
        return Err(Error::SlugTaken(new.slug.to_string()));
    }
    inserted?;
    let detail = serde_json::json!({ "slug": new.slug, "region": new.region, "plan": new.plan });
    Ok(silo_core::audit::record(tx, now, actor, "tenant.create", Some(new.id), &detail).await?)
}

async fn fetch_in(tx: &mut db::Tx, id: TenantId) -> Result<Tenant> {
    let row = db::query("SELECT * FROM tenants WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))?;
    Tenant::from_row(&row)
}

/// A tenant's new display name, checked: 1 to 200 characters, not only blank. The most counts
/// what was sent (as the API's schema says), the least what it says once trimmed.
pub fn display_name(name: &str) -> Result<&str> {
    let too_long = name.chars().count() > 200;
    let name = silo_core::text::trim(name);
    if name.is_empty() || too_long {
        return Err(Error::invalid("name", "a workspace name has 1 to 200 characters"));
    }
    Ok(name)
}

/// Reads and writes of the tenants table for the services above the fleet (the backup
/// scheduler, restores, moves, purges).
impl ControlPlane {
    /// The newest tenant row's sequence number (its rowid: rows are never deleted, so it only
    /// grows).
    pub async fn tenant_sequence(&self) -> Result<i64> {
        Ok(db::query_scalar("SELECT coalesce(max(rowid), 0) FROM tenants").fetch_one(self.reader()).await?)
    }

    /// Live tenants inserted after sequence number `after`, and the newest sequence number
    /// (a rowid range: costs what was added, not the fleet).
    pub async fn live_tenants_after(&self, after: i64) -> Result<(Vec<Tenant>, i64)> {
        let rows = db::query("SELECT rowid AS seq, * FROM tenants WHERE rowid > ? ORDER BY rowid")
            .bind(after)
            .fetch_all(self.reader())
            .await?;
        let newest = match rows.last() {
            Some(row) => db::Row::try_get(row, "seq")?,
            None => after,
        };
        let tenants = rows.iter().map(Tenant::from_row).collect::<Result<Vec<_>>>()?;
        Ok((tenants.into_iter().filter(|t| t.status.is_live()).collect(), newest))
    }

    /// The live tenants among `ids` (one statement however many).
    pub async fn live_tenants_among(&self, ids: &[TenantId]) -> Result<Vec<Tenant>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(&ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| Error::Config(e.to_string()))?;
        let rows = db::query(
            "SELECT * FROM tenants WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('active', 'suspended')",
        )
        .bind(list)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(Tenant::from_row).collect()
    }

    /// How many tenants are live (active or suspended).
    pub async fn live_tenant_count(&self) -> Result<usize> {
        let count: i64 =
            db::query_scalar("SELECT count(*) FROM tenants WHERE status IN ('active', 'suspended')")
                .fetch_one(self.reader())
                .await?;
        Ok(count as usize)
    }

    /// The end of a purge, in one transaction: the status becomes `deleted`, the crates above
    /// forget the tenant in their tables (`others`, `?1` the tenant's id: the backup catalogue
    /// and the wrapped data key among them), and `certificate` goes to the audit log.
    pub(crate) async fn finish_purge(
        &self,
        tenant: TenantId,
        actor: &str,
        certificate: &serde_json::Value,
        others: &[&'static str],
    ) -> Result<Tenant> {
        let now = self.now();
        let mut tx = self.writer().begin().await?;
        let id = tenant.to_string();
        // The slug and name go: `purged-<uuid without dashes>` is a valid slug no one else can
        // hold (ids are never reused), and frees the old slug.
        let changed = db::query(
            "UPDATE tenants SET status = 'deleted', slug = 'purged-' || replace(id, '-', ''), name = 'purged workspace',
             updated_at = ?2, deleted_at = ?2 WHERE id = ?1 AND status = 'deleting'",
        )
        .bind(&id)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() != 1 {
            return Err(Error::InvalidTransition {
                tenant: id,
                action: "purge",
                status: "not deleting".into(),
            });
        }
        silo_core::audit::forget_tenant_names(&mut tx, tenant).await?;
        silo_jobs::queue::remove_result_field_in(
            &mut tx,
            crate::jobs::TENANT_EXPORT,
            "$.tenant",
            &id,
            "$.manifest.slug",
        )
        .await?;
        for statement in others {
            db::query(sqlx::AssertSqlSafe(*statement)).bind(&id).execute(&mut *tx).await?;
        }
        silo_core::audit::record(&mut tx, &now, actor, "tenant.purge", Some(tenant), certificate).await?;
        tx.commit().await?;
        self.tenant_by_id(tenant).await
    }

    /// Moves a tenant to another region (its file is already there), with an audit entry.
    pub async fn set_region(
        &self,
        tenant: TenantId,
        region: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let now = self.now();
        let mut tx = self.writer().begin().await?;
        db::query("UPDATE tenants SET region = ?, updated_at = ? WHERE id = ?")
            .bind(region)
            .bind(now.as_str())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        silo_core::audit::record(&mut tx, &now, actor, "tenant.move", Some(tenant), detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An audit entry outside any other change (restores, exports, verifications).
    pub async fn record_audit(
        &self,
        tenant: TenantId,
        actor: &str,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        silo_core::audit::record(&mut tx, &self.now(), actor, action, Some(tenant), detail).await?;
        tx.commit().await?;
        Ok(())
    }
}
