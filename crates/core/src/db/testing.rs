//! A throwaway PostgreSQL for tests: the control-plane tests run on both engines.
//!
//! [`postgres_database`] gives each test an empty database of its own. With
//! `SILO_TEST_POSTGRES_URL` set, the databases are made on that server; otherwise the first
//! call starts a cluster of this test process's own in a temporary directory (`initdb` and
//! `pg_ctl` from Debian's `postgresql` package, found under `/usr/lib/postgresql`, or on the
//! `PATH`), as an unprivileged user when the tests run as root, listening on loopback only.
//! A watchdog stops it and removes the directory when the test process ends, however it
//! ends. Without PostgreSQL the PostgreSQL half of a test is skipped, unless
//! `SILO_REQUIRE_POSTGRES=1` (CI) makes that a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The process's own cluster: its URL, and the watchdog whose stdin closing stops it.
struct Cluster {
    url: String,
    _watchdog: Mutex<Child>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The URL of a new, empty PostgreSQL database, or `None` (after saying why on stderr) when
/// no PostgreSQL can be had and none is required.
pub async fn postgres_database() -> Option<String> {
    let base = match std::env::var("SILO_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        // A start can lose the race for its free port to another process: tried again.
        _ => match CLUSTER.get_or_init(|| start().or_else(|_| start())) {
            Ok(cluster) => cluster.url.clone(),
            Err(why) => {
                if std::env::var("SILO_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("SILO_REQUIRE_POSTGRES=1 but no PostgreSQL: {why}");
                }
                eprintln!("PostgreSQL half skipped: {why}");
                return None;
            }
        },
    };
    let name = format!("silo_test_{}", uuid::Uuid::now_v7().simple());
    let admin = super::Db::postgres(&base, 1).await.expect("connect to the test PostgreSQL");
    super::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (server, _) = base.rsplit_once('/').expect("a PostgreSQL URL ends with its database");
    Some(format!("{server}/{name}"))
}

/// The engine this test process puts the control plane on: `SILO_TEST_CONTROL`
/// (`sqlite` or `postgres`) when set, else PostgreSQL for a test binary whose name has
/// `_on_postgres` in it (a test file run again on PostgreSQL, e.g. `tests/web_on_postgres.rs`
/// naming `web.rs` as its module), else SQLite.
pub fn engine() -> super::Engine {
    match std::env::var("SILO_TEST_CONTROL").as_deref() {
        Ok("postgres") => return super::Engine::Postgres,
        Ok("sqlite") => return super::Engine::Sqlite,
        _ => {}
    }
    let binary =
        std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if binary.is_some_and(|name| name.contains("_on_postgres")) {
        super::Engine::Postgres
    } else {
        super::Engine::Sqlite
    }
}

/// `[control] url` for this test's control plane: a new PostgreSQL database when
/// [`engine`] says PostgreSQL (and one can be had; otherwise the test runs on SQLite, unless
/// PostgreSQL is required), `None` for the embedded `control.db`.
pub async fn control_url() -> Option<String> {
    match engine() {
        super::Engine::Sqlite => None,
        super::Engine::Postgres => postgres_database().await,
    }
}

/// The directory holding `initdb` and `pg_ctl`: Debian's newest, else the `PATH`'s.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(PathBuf::from)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// Runs `program` (as `nobody` when this process is root: PostgreSQL refuses to run as root).
fn command(program: &Path, as_nobody: bool) -> Command {
    if as_nobody {
        let mut command = Command::new("runuser");
        command.args(["-u", "nobody", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start() -> Result<Cluster, String> {
    let bin = binaries().ok_or("initdb not found (install Debian's postgresql package)")?;
    let as_nobody = is_root();
    let dir = std::env::temp_dir().join(format!("silo-test-pg-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if as_nobody {
        let ids = |flag: &str| -> Result<u32, String> {
            let out = Command::new("id").args([flag, "nobody"]).output().map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| "no user nobody".to_owned())
        };
        std::os::unix::fs::chown(&dir, Some(ids("-u")?), Some(ids("-g")?)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let run = |command: &mut Command, what: &str| -> Result<(), String> {
        let out = command.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        command(&bin.join("initdb"), as_nobody).arg("-D").arg(&data).args([
            "--no-locale",
            "-E",
            "UTF8",
            "--auth=trust",
            "-U",
            "silo",
            "--no-sync",
        ]),
        "initdb",
    )?;
    // A free loopback port (another process could take it before the server does; rare).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        dir.display()
    );
    let pg_ctl = bin.join("pg_ctl");
    run(
        command(&pg_ctl, as_nobody)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &options, "start"]),
        "pg_ctl start",
    )?;
    // The watchdog waits for its stdin to close (this process ended), then stops the server
    // and removes its directory.
    let stop = format!(
        "read _; {} '{}' -D '{}' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
        if as_nobody { "runuser -u nobody --" } else { "" },
        pg_ctl.display(),
        data.display(),
        dir.display()
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    // Its stdout is only kept open so that nothing it prints blocks it.
    if let Some(out) = watchdog.stdout.take() {
        std::thread::spawn(move || BufReader::new(out).lines().for_each(drop));
    }
    Ok(Cluster { url: format!("postgres://silo@127.0.0.1:{port}/postgres"), _watchdog: Mutex::new(watchdog) })
}

/// Whether this process runs as root (read from `/proc`, to need no libc call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// A migrated control plane for a test on `engine`, as `(writer, reader)`: on SQLite
/// `control.db` in `dir` (a one-connection writer and a read-only pool, as the application
/// opens it), on PostgreSQL a new database on the test cluster (one pool for both). `None`
/// when PostgreSQL cannot be had and is not required (see [`postgres_database`]).
pub async fn control_plane(
    engine: super::Engine,
    dir: &Path,
    sqlite: &sqlx::migrate::Migrator,
    postgres: &sqlx::migrate::Migrator,
) -> Option<(super::Db, super::Db)> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    match engine {
        super::Engine::Sqlite => {
            let options = SqliteConnectOptions::new()
                .filename(dir.join("control.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true);
            let write =
                SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
            sqlite.run(&write).await.unwrap();
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .unwrap();
            Some((super::Db::Sqlite(write), super::Db::Sqlite(read)))
        }
        super::Engine::Postgres => {
            let db = super::Db::postgres(&postgres_database().await?, 8).await.unwrap();
            db.migrate(postgres).await.unwrap();
            Some((db.clone(), db))
        }
    }
}

/// `#[tokio::test]`s that run `async fn name(engine: Engine)` on each engine: `sqlite::name`
/// and `postgres::name`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::db::Engine::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::db::Engine::Postgres).await
            })*
        }
    };
}

/// Makes every insert into `table` fail with the message `injected` (a trigger named
/// `refuse_<table>`), as a failing disk would mid-way through a change: on either engine.
pub async fn refuse_inserts(db: &super::Db, table: &str) {
    let statements = match db.engine() {
        super::Engine::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )],
        super::Engine::Postgres => vec![
            "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'injected'; END $$"
                .to_owned(),
            format!("CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_insert()"),
        ],
    };
    for statement in statements {
        super::query(sqlx::AssertSqlSafe(statement)).execute(db).await.expect("install the failing trigger");
    }
}

/// Undoes [`refuse_inserts`].
pub async fn allow_inserts(db: &super::Db, table: &str) {
    let statement = match db.engine() {
        super::Engine::Sqlite => format!("DROP TRIGGER refuse_{table}"),
        super::Engine::Postgres => format!("DROP TRIGGER refuse_{table} ON {table}"),
    };
    super::query(sqlx::AssertSqlSafe(statement)).execute(db).await.expect("remove the failing trigger");
}

/// Everything the control plane stores, for a test that looks for bytes that must not be
/// there: on SQLite the file `control.db` in `data_dir` and its WAL, byte for byte; on
/// PostgreSQL every row of every table, as text.
pub async fn stored_bytes(db: &super::Db, data_dir: &Path) -> Vec<u8> {
    match db.engine() {
        super::Engine::Sqlite => {
            let mut bytes = std::fs::read(data_dir.join("control.db")).expect("control.db");
            bytes.extend(std::fs::read(data_dir.join("control.db-wal")).unwrap_or_default());
            bytes
        }
        super::Engine::Postgres => {
            let tables: Vec<String> = super::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(db)
            .await
            .expect("list the tables");
            let mut all = String::new();
            for table in tables {
                let rows: Option<String> = super::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT string_agg(t::text, ' ') FROM {table} t"
                )))
                .fetch_one(db)
                .await
                .expect("read a table");
                all.push_str(&rows.unwrap_or_default());
                all.push('\n');
            }
            all.into_bytes()
        }
    }
}

/// A TCP proxy on loopback in front of a database server, which a test can cut (every
/// connection through it dropped, new ones refused) and heal: the network between a node and
/// its control plane, failing.
pub struct Proxy {
    /// Where it listens (`127.0.0.1:port`).
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections: std::sync::Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Default::default();
        let accepting = tokio::spawn({
            let (cut, connections) = (cut.clone(), connections.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is refused as soon as it is made
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().expect("the proxy's connections").push(task.abort_handle());
                }
            }
        });
        Self { addr, cut, connections, accepting }
    }

    /// `url` (a PostgreSQL URL) through this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (user, rest) = rest.split_once('@').expect("a user");
        let (_, path) = rest.split_once('/').expect("a database");
        format!("{scheme}://{user}@{}/{path}", self.addr)
    }

    /// Drops every connection through it and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().expect("the proxy's connections").drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The upstream server's `host:port` of a PostgreSQL URL.
    pub fn upstream_of(url: &str) -> String {
        let rest = url.split_once('@').expect("a user").1;
        rest.split_once('/').expect("a database").0.to_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}
