//! The control plane's database, on either engine: the embedded SQLite file (`control.db`,
//! the default) or a PostgreSQL server (`[control] url`, for a cluster of nodes).
//!
//! Each table owner writes its statements once, in SQLite's dialect, through [`query`],
//! [`query_as`] and [`query_scalar`]; they run natively on either driver (sqlx's own
//! `Sqlite` and `Postgres`, not its `Any`, which cannot carry booleans or the drivers'
//! settings). What differs between the dialects is in [`dialect`]. A [`Tx`] is one
//! transaction on either engine, passed between crates as the SQLite transaction was.
//!
//! Writes keep SQLite's rule on both engines: [`Db::begin`] opens a transaction that runs
//! alone among the control plane's transactions. SQLite's one writer gives that for free; on
//! PostgreSQL the transaction first takes a transaction-scoped advisory lock, so code that
//! reads and then writes in one transaction (a status change, an invoice number, a bounded
//! queue) means the same on both.

pub mod dialect;
pub mod testing;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, ColumnIndex, ConnectOptions, Row as _};

use crate::Timestamp;

/// How long a statement waits for a PostgreSQL connection before the database counts as
/// unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The advisory lock key every PostgreSQL write transaction takes ("silo" in ASCII).
const WRITE_LOCK: i64 = 0x7369_6c6f;

/// Which engine a [`Db`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The embedded file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A pool of connections to the control plane's database.
#[derive(Clone, Debug)]
pub enum Db {
    /// `control.db`.
    Sqlite(SqlitePool),
    /// A PostgreSQL database, and this process's turn to write: a write transaction waits for
    /// it before it takes a connection, so writers queued for the advisory lock never hold
    /// every connection of the pool while readers wait.
    Postgres(PgPool, Arc<tokio::sync::Mutex<()>>),
}

impl Db {
    /// Connects to the PostgreSQL database at `url` (`postgres://` or `postgresql://`) with at
    /// most `connections` connections.
    pub async fn postgres(url: &str, connections: u32) -> sqlx::Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(sqlx::Error::Configuration(
                "a PostgreSQL URL starts with postgres:// or postgresql:// (user, password, host, port, database)".into(),
            ));
        }
        let options = url
            .parse::<PgConnectOptions>()?
            .application_name("silo")
            // The migrations' "already exists, skipping" and the like are not news.
            .options([("client_min_messages", "warning")])
            // Statements carry people's data as parameters; they are not logged.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            // A request waits this long for a connection: when PostgreSQL is down, the refusal
            // (503) comes after it, not after the default half minute.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self::Postgres(pool, Arc::default()))
    }

    /// Why connecting to (or migrating) a PostgreSQL control plane failed, in the words an
    /// operator acts on: PostgreSQL's own message without the line of its source file that
    /// sqlx appends, with what to do for the usual causes.
    pub fn explain(error: &sqlx::Error) -> String {
        match error {
            sqlx::Error::Database(e) => {
                let code = e.code().unwrap_or_default();
                let hint = match code.as_ref() {
                    // insufficient_privilege
                    "42501" => {
                        " (the role needs CREATE on the database and its schema: GRANT CREATE ON SCHEMA public TO …)"
                    }
                    // invalid_catalog_name: no such database
                    "3D000" => " (create it first: CREATE DATABASE …)",
                    _ => "",
                };
                format!("{}{hint}", e.message())
            }
            sqlx::Error::Configuration(e) => format!("the URL is not valid: {e}"),
            sqlx::Error::PoolTimedOut => format!(
                "no connection within {} s: is PostgreSQL running at that address and port, and reachable from here?",
                ACQUIRE_TIMEOUT.as_secs()
            ),
            other => other.to_string(),
        }
    }

    /// The engine it runs on.
    pub fn engine(&self) -> Engine {
        match self {
            Self::Sqlite(_) => Engine::Sqlite,
            Self::Postgres(..) => Engine::Postgres,
        }
    }

    /// Opens a transaction that runs alone among the control plane's transactions (see the
    /// module's documentation).
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self {
            Self::Sqlite(pool) => Ok(Tx(Conn::Sqlite(pool.begin().await?))),
            Self::Postgres(pool, turn) => {
                let turn = turn.clone().lock_owned().await;
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
                Ok(Tx(Conn::Postgres(tx, turn)))
            }
        }
    }

    /// Runs `migrations` (the set for this engine).
    pub async fn migrate(
        &self,
        migrations: &sqlx::migrate::Migrator,
    ) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Self::Sqlite(pool) => migrations.run(pool).await,
            Self::Postgres(pool, _) => migrations.run(pool).await,
        }
    }

    /// On PostgreSQL, tells every listener of `channel` (the servers sharing the database)
    /// `payload`; nothing on `control.db`, which one process uses.
    pub async fn notify(&self, channel: &str, payload: &str) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(pool, _) => {
                sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await?;
                Ok(())
            }
        }
    }

    /// On PostgreSQL, calls `heard(Some(payload))` for every notification on `channel`, and
    /// `heard(None)` each time it (re)connects (what was sent while it was not listening is
    /// gone), until `stop`. Returns at once on `control.db`.
    pub async fn listen(
        &self,
        channel: &str,
        mut heard: impl FnMut(Option<&str>),
        stop: impl std::future::Future<Output = ()>,
    ) {
        let Self::Postgres(pool, _) = self else { return };
        // A connection of its own, beside the pool: listening holds it for good, and the pool's
        // are the requests'.
        let options = pool.connect_options().as_ref().clone();
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        tokio::pin!(stop);
        loop {
            let connect = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
                listener.listen(channel).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let listener = tokio::select! {
                listener = connect => listener,
                () = &mut stop => return,
            };
            if let Ok(mut listener) = listener {
                heard(None);
                loop {
                    let next = tokio::select! {
                        next = listener.try_recv() => next,
                        () = &mut stop => return,
                    };
                    match next {
                        Ok(Some(notification)) => heard(Some(notification.payload())),
                        Ok(None) => heard(None),
                        // A connection that broke in a way the listener does not reconnect
                        // from: a new one.
                        Err(_) => break,
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = &mut stop => return,
            }
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool, _) => pool.close().await,
        }
    }
}

/// One transaction on either engine. Dropped without [`Tx::commit`], it rolls back.
///
/// Like sqlx's own transaction it dereferences to the connection it holds ([`Conn`]), so a
/// statement runs in it with `.execute(&mut *tx)` (or `&mut **tx` through a `&mut Tx`), and a
/// function that only runs statements takes `&mut Conn`.
#[derive(Debug)]
pub struct Tx(Conn);

/// The connection of a transaction in progress; see [`Tx`].
#[derive(Debug)]
pub enum Conn {
    /// On `control.db`.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// On PostgreSQL, holding the process's turn to write until it ends.
    Postgres(sqlx::Transaction<'static, Postgres>, tokio::sync::OwnedMutexGuard<()>),
}

impl Tx {
    /// Commits it.
    pub async fn commit(self) -> sqlx::Result<()> {
        match self.0 {
            Conn::Sqlite(tx) => tx.commit().await,
            Conn::Postgres(tx, _) => tx.commit().await,
        }
    }

    /// Rolls it back.
    pub async fn rollback(self) -> sqlx::Result<()> {
        match self.0 {
            Conn::Sqlite(tx) => tx.rollback().await,
            Conn::Postgres(tx, _) => tx.rollback().await,
        }
    }
}

impl Conn {
    /// The engine it runs on.
    pub fn engine(&self) -> Engine {
        match self {
            Self::Sqlite(_) => Engine::Sqlite,
            Self::Postgres(..) => Engine::Postgres,
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

/// The database's clock, in milliseconds since the Unix epoch: on PostgreSQL, the one clock
/// every server of a cluster compares leases against (`clock_timestamp()`); on `control.db`,
/// which only this machine uses, its system clock. Deliberately not the process's clock (a
/// test's `TestClock` moves by hand; leases run on real time).
pub async fn now_ms<'e>(on: impl Into<On<'e>>) -> sqlx::Result<i64> {
    let on = on.into();
    let engine = match &on {
        On::Db(db) => db.engine(),
        On::Tx(conn) => conn.engine(),
    };
    match engine {
        Engine::Sqlite => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)),
        Engine::Postgres => {
            query_scalar::<i64>("SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)")
                .fetch_one(on)
                .await
        }
    }
}

/// Where a statement runs: on a pool (a connection of its own) or inside a transaction.
pub enum On<'e> {
    /// A connection from the pool, for this statement only.
    Db(&'e Db),
    /// The transaction.
    Tx(&'e mut Conn),
}

impl<'e> From<&'e Db> for On<'e> {
    fn from(db: &'e Db) -> Self {
        Self::Db(db)
    }
}

impl<'e> From<&'e mut Tx> for On<'e> {
    fn from(tx: &'e mut Tx) -> Self {
        Self::Tx(&mut tx.0)
    }
}

impl<'e> From<&'e mut Conn> for On<'e> {
    fn from(conn: &'e mut Conn) -> Self {
        Self::Tx(conn)
    }
}

/// Statement text: a literal, or text built at run time and audited for injection by its
/// author (`sqlx::AssertSqlSafe`).
pub trait Statement {
    /// The text.
    fn text(self) -> Cow<'static, str>;
}

impl Statement for &'static str {
    fn text(self) -> Cow<'static, str> {
        Cow::Borrowed(self)
    }
}

impl Statement for AssertSqlSafe<&'static str> {
    fn text(self) -> Cow<'static, str> {
        Cow::Borrowed(self.0)
    }
}

impl Statement for AssertSqlSafe<String> {
    fn text(self) -> Cow<'static, str> {
        Cow::Owned(self.0)
    }
}

/// A bound parameter. A null keeps its type: PostgreSQL checks `?1 IS NULL OR id < ?1` with
/// the type the parameter is sent with.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// INTEGER / BIGINT.
    Int(Option<i64>),
    /// REAL / DOUBLE PRECISION.
    Real(Option<f64>),
    /// TEXT.
    Text(Option<String>),
    /// BLOB / BYTEA.
    Blob(Option<Vec<u8>>),
    /// INTEGER 0/1 / BOOLEAN.
    Bool(Option<bool>),
}

/// What can be bound as a parameter.
pub trait Param {
    /// The value.
    fn value(self) -> Value;
    /// The null of this type.
    fn null() -> Value
    where
        Self: Sized;
}

macro_rules! param {
    ($($ty:ty => $variant:ident($convert:expr)),* $(,)?) => {
        $(impl Param for $ty {
            fn value(self) -> Value {
                #[allow(clippy::redundant_closure_call)]
                Value::$variant(Some(($convert)(self)))
            }
            fn null() -> Value {
                Value::$variant(None)
            }
        })*
    };
}

param! {
    i64 => Int(|v| v),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    f64 => Real(|v| v),
    bool => Bool(|v| v),
    String => Text(|v| v),
    &String => Text(|v: &String| v.clone()),
    &str => Text(str::to_owned),
    Cow<'_, str> => Text(Cow::into_owned),
    Timestamp => Text(|v: Timestamp| v.as_str().to_owned()),
    &Timestamp => Text(|v: &Timestamp| v.as_str().to_owned()),
    Vec<u8> => Blob(|v| v),
    &Vec<u8> => Blob(|v: &Vec<u8>| v.clone()),
    &[u8] => Blob(<[u8]>::to_vec),
}

impl<T: Param> Param for Option<T> {
    fn value(self) -> Value {
        self.map_or_else(T::null, Param::value)
    }

    fn null() -> Value {
        T::null()
    }
}

impl<T: Param + Clone> Param for &Option<T> {
    fn value(self) -> Value {
        self.clone().value()
    }

    fn null() -> Value {
        T::null()
    }
}

/// A statement and its parameters; see [`query`].
#[must_use = "a query does nothing until it is run"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

/// The outcome of a statement that returns no rows.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    /// How many rows it changed.
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement, in SQLite's dialect (see [`dialect`]).
pub fn query(sql: impl Statement) -> Query {
    Query { sql: sql.text(), args: Vec::new() }
}

/// A statement whose rows decode as `T` (derive `sqlx::FromRow`).
pub fn query_as<T: Record>(sql: impl Statement) -> QueryAs<T> {
    QueryAs { query: query(sql), row: PhantomData }
}

/// A statement whose rows are one value, of type `T`.
pub fn query_scalar<T: Column>(sql: impl Statement) -> QueryScalar<T> {
    QueryScalar { query: query(sql), value: PhantomData }
}

// One body per engine and target, for each way of running a statement.
macro_rules! run {
    ($self:ident, $on:ident, $method:ident, |$result:ident| $map:expr) => {
        match $on.into() {
            On::Db(Db::Sqlite(pool)) => {
                let $result = $self.sqlite().$method(pool).await?;
                $map
            }
            On::Db(Db::Postgres(pool, _)) => {
                let $result = $self.postgres().$method(pool).await?;
                $map
            }
            On::Tx(Conn::Sqlite(tx)) => {
                let $result = $self.sqlite().$method(&mut **tx).await?;
                $map
            }
            On::Tx(Conn::Postgres(tx, _)) => {
                let $result = $self.postgres().$method(&mut **tx).await?;
                $map
            }
        }
    };
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Value::Int(v) => query.bind(v),
                Value::Real(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Blob(v) => query.bind(v),
                Value::Bool(v) => query.bind(v),
            };
        }
        query
    }};
}

impl Query {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Param) -> Self {
        self.args.push(value.value());
        self
    }

    /// The statement as SQLite runs it (its own dialect).
    fn sqlite(self) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
        bind_all!(sqlx::query(AssertSqlSafe(self.sql)), self.args)
    }

    /// The statement as PostgreSQL runs it.
    fn postgres(self) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
        bind_all!(sqlx::query(AssertSqlSafe(dialect::to_postgres(&self.sql))), self.args)
    }

    /// Runs it; the rows it changed.
    pub async fn execute<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Done> {
        run!(self, on, execute, |done| Ok(Done { rows_affected: done.rows_affected() }))
    }

    /// Every row.
    pub async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Vec<Row>> {
        run!(self, on, fetch_all, |rows| Ok(rows.into_iter().map(Row::from).collect()))
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Option<Row>> {
        run!(self, on, fetch_optional, |row| Ok(row.map(Row::from)))
    }

    /// The first row; `RowNotFound` without one.
    pub async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Row> {
        run!(self, on, fetch_one, |row| Ok(Row::from(row)))
    }
}

/// A row from either engine.
pub enum Row {
    /// From SQLite.
    Sqlite(SqliteRow),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl From<SqliteRow> for Row {
    fn from(row: SqliteRow) -> Self {
        Self::Sqlite(row)
    }
}

impl From<PgRow> for Row {
    fn from(row: PgRow) -> Self {
        Self::Postgres(row)
    }
}

/// A type a column decodes to on both engines.
pub trait Column:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + Send
    + Unpin
{
}

impl<T> Column for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + Send
        + Unpin
{
}

/// A type a row decodes to on both engines (`#[derive(sqlx::FromRow)]` gives it).
pub trait Record:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A column's position or name.
pub trait Index: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + std::fmt::Debug {}

impl<I> Index for I where I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + std::fmt::Debug {}

impl Row {
    /// The value of a column.
    pub fn try_get<T: Column, I: Index>(&self, column: I) -> sqlx::Result<T> {
        match self {
            Self::Sqlite(row) => row.try_get(column),
            Self::Postgres(row) => row.try_get(column),
        }
    }

    /// The row as a `T`.
    pub fn decode<T: Record>(&self) -> sqlx::Result<T> {
        match self {
            Self::Sqlite(row) => T::from_row(row),
            Self::Postgres(row) => T::from_row(row),
        }
    }
}

/// JSON stored as text, which either engine reads (sqlx's `#[sqlx(json)]` wants PostgreSQL's
/// JSON types; the control plane keeps JSON as text on both): a field of a row type takes
/// it with `#[sqlx(try_from = "silo_core::db::JsonText")]` when its type implements
/// `TryFrom<JsonText>` (through [`JsonText::parse`]).
#[derive(Clone, Debug)]
pub struct JsonText(pub String);

impl JsonText {
    /// The value it holds.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(&self.0)
    }
}

impl sqlx::Type<Sqlite> for JsonText {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <String as sqlx::Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Sqlite> for JsonText {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<String as sqlx::Decode<Sqlite>>::decode(value)?))
    }
}

impl sqlx::Type<Postgres> for JsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for JsonText {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<String as sqlx::Decode<Postgres>>::decode(value)?))
    }
}

/// A statement whose rows decode as `T`; see [`query_as`].
#[must_use = "a query does nothing until it is run"]
pub struct QueryAs<T> {
    query: Query,
    row: PhantomData<fn() -> T>,
}

impl<T: Record> QueryAs<T> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Param) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Every row.
    pub async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Vec<T>> {
        self.query.fetch_all(on).await?.iter().map(Row::decode).collect()
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Option<T>> {
        self.query.fetch_optional(on).await?.as_ref().map(Row::decode).transpose()
    }

    /// The first row; `RowNotFound` without one.
    pub async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<T> {
        self.query.fetch_one(on).await?.decode()
    }
}

/// A statement whose rows are one value; see [`query_scalar`].
#[must_use = "a query does nothing until it is run"]
pub struct QueryScalar<T> {
    query: Query,
    value: PhantomData<fn() -> T>,
}

impl<T: Column> QueryScalar<T> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Param) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// The first column of every row.
    pub async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Vec<T>> {
        self.query.fetch_all(on).await?.iter().map(|row| row.try_get(0)).collect()
    }

    /// The first column of the first row, if any.
    pub async fn fetch_optional<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<Option<T>> {
        self.query.fetch_optional(on).await?.map(|row| row.try_get(0)).transpose()
    }

    /// The first column of the first row; `RowNotFound` without one.
    pub async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> sqlx::Result<T> {
        self.query.fetch_one(on).await?.try_get(0)
    }
}
