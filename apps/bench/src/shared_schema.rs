//! The comparison build for `silo-bench http --postgres`: the same endpoint on PostgreSQL with
//! one shared schema, as a conventional multi-tenant application would build it.
//!
//! Every table carries `tenant_id`; tasks are keyed `(tenant_id, id)`, so a tenant's first
//! page is one index range scan. `GET /api/v1/w/{slug}/tasks?limit=20` with a bearer token does
//! what Silo's endpoint does — token (SHA-256 at rest), tenant by slug, the caller's membership,
//! the 21 newest tasks with their assignee's name, JSON of
//! `{"items": [...], "next_cursor": ...}` — in two statements on a pooled connection. The
//! server is actix-web with the same two workers; PostgreSQL comes from the Debian package
//! (`postgresql`), in a scratch cluster this bench creates, starts and removes.
//!
//! The data is Silo's fixture again: the same slugs and tokens (the wrk script's `TOKENS` file
//! serves both servers) and the same tasks per tenant, titles included.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connections of the application's pool (sqlx's default maximum).
const POOL: u32 = 10;

/// A scratch PostgreSQL cluster, stopped and removed on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    root: PathBuf,
    /// The server's TCP port on loopback.
    pub port: u16,
}

impl Postgres {
    /// Creates a cluster under a fresh directory in the system's temp directory and starts it
    /// on a free loopback port. As root, the server runs as the `postgres` user (it refuses to
    /// run as root).
    pub fn start() -> anyhow::Result<Self> {
        let bin = binaries()?;
        let root = std::env::temp_dir().join(format!("silo-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let data = root.join("data");
        if rustix::process::geteuid().is_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&root))?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let postgres = Self { bin, data, root, port };
        postgres
            .as_owner("initdb", &["-D", &postgres.data_str(), "-A", "trust", "-U", "bench", "--no-sync"])?;
        // A server tuned as one would for this machine: the whole table fits in shared buffers,
        // and nothing is written during the reads.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_connections=64 -c fsync=off -c synchronous_commit=off",
            postgres.root.display()
        );
        postgres.as_owner(
            "pg_ctl",
            &[
                "-D",
                &postgres.data_str(),
                "-o",
                &options,
                "-l",
                &postgres.root.join("log").to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        Ok(postgres)
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://bench@127.0.0.1:{}/postgres", self.port)
    }

    fn data_str(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when this process is root.
    fn as_owner(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(&self.root);
        run(&mut command)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.as_owner("pg_ctl", &["-D", &self.data_str(), "-m", "fast", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs a command to completion; its output is shown only when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// PostgreSQL's programs: `SILO_BENCH_PG_BIN`, else `initdb` on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (where Debian puts them).
fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SILO_BENCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    }) {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| anyhow::anyhow!("PostgreSQL not found: install the Debian package `postgresql`"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))
}

/// Creates the shared schema and loads `spread` (slug, token) with `tasks` tasks each, as
/// Silo's fixture does (project 1, titles `task {i} of {slug}`, one owner named `Bench`).
pub async fn load(pool: &PgPool, spread: &[(String, String)], tasks: usize) -> anyhow::Result<()> {
    for statement in [
        "CREATE TABLE tenants (id bigserial PRIMARY KEY, slug text NOT NULL UNIQUE)",
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE)",
        "CREATE TABLE members (tenant_id bigint NOT NULL REFERENCES tenants, id bigint NOT NULL,
            user_id bigint NOT NULL REFERENCES users, role text NOT NULL, display_name text NOT NULL,
            left_at timestamptz, PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, user_id))",
        "CREATE TABLE api_tokens (hash text PRIMARY KEY, user_id bigint NOT NULL REFERENCES users,
            tenant_id bigint NOT NULL REFERENCES tenants)",
        "CREATE TABLE projects (tenant_id bigint NOT NULL REFERENCES tenants, id bigint NOT NULL,
            name text NOT NULL, PRIMARY KEY (tenant_id, id))",
        "CREATE TABLE tasks (tenant_id bigint NOT NULL, id bigint NOT NULL, project_id bigint NOT NULL,
            title text NOT NULL, body text NOT NULL DEFAULT '', status text NOT NULL DEFAULT 'todo',
            assignee_id bigint, due_date date, created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id),
            FOREIGN KEY (tenant_id, project_id) REFERENCES projects)",
        "INSERT INTO users (email) VALUES ('bench@example.com')",
    ] {
        sqlx::query(statement).execute(pool).await?;
    }
    let slugs: Vec<&str> = spread.iter().map(|(slug, _)| slug.as_str()).collect();
    let hashes: Vec<String> = spread.iter().map(|(_, token)| token_hash(token)).collect();
    sqlx::query("INSERT INTO tenants (slug) SELECT * FROM unnest($1::text[])")
        .bind(&slugs)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO api_tokens (hash, user_id, tenant_id)
         SELECT h, 1, t.id FROM unnest($1::text[], $2::text[]) AS x(s, h) JOIN tenants t ON t.slug = x.s",
    )
    .bind(&slugs)
    .bind(&hashes)
    .execute(pool)
    .await?;
    for statement in [
        "INSERT INTO members (tenant_id, id, user_id, role, display_name) SELECT id, 1, 1, 'owner', 'Bench' FROM tenants",
        "INSERT INTO projects (tenant_id, id, name) SELECT id, 1, 'bench' FROM tenants",
    ] {
        sqlx::query(statement).execute(pool).await?;
    }
    sqlx::query(
        "INSERT INTO tasks (tenant_id, id, project_id, title)
         SELECT t.id, g.i, 1, 'task ' || (g.i - 1) || ' of ' || t.slug FROM tenants t, generate_series(1, $1) AS g(i)",
    )
    .bind(tasks as i64)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}

/// How tokens are kept at rest: hex SHA-256, as Silo keeps them.
fn token_hash(token: &str) -> String {
    silo_core::tokens::sha256_hex(token.as_bytes())
}

/// A task as the endpoint returns it (Silo's fields).
#[derive(Serialize, sqlx::FromRow)]
struct Task {
    id: i64,
    project_id: i64,
    title: String,
    body: String,
    status: String,
    assignee_id: Option<i64>,
    assignee: Option<String>,
    due_date: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct TaskPage {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

/// Starts the comparison server on a free loopback port (two workers, as Silo's bench server).
pub async fn serve(url: &str) -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle, PgPool)> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(pool.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok") }))
            .route("/api/v1/w/{slug}/tasks", web::get().to(list_tasks))
    })
    .workers(2)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle, pool))
}

/// `GET /api/v1/w/{slug}/tasks?limit=20`: the first page of a tenant's tasks.
async fn list_tasks(req: HttpRequest, pool: web::Data<PgPool>, slug: web::Path<String>) -> HttpResponse {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return HttpResponse::Unauthorized().finish();
    };
    let limit = 20_i64;
    let tenant: Result<Option<(i64,)>, _> = sqlx::query_as(
        "SELECT t.id FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id
         JOIN members m ON m.tenant_id = t.id AND m.user_id = k.user_id AND m.left_at IS NULL
         WHERE k.hash = $1 AND t.slug = $2",
    )
    .bind(token_hash(token))
    .bind(slug.as_str())
    .fetch_optional(pool.get_ref())
    .await;
    let tenant = match tenant {
        Ok(Some((id,))) => id,
        Ok(None) => return HttpResponse::NotFound().finish(),
        Err(e) => return HttpResponse::InternalServerError().body(e.to_string()),
    };
    let rows: Result<Vec<Task>, _> = sqlx::query_as(
        "SELECT t.id, t.project_id, t.title, t.body, t.status, t.assignee_id,
            m.display_name || CASE WHEN m.left_at IS NULL THEN '' ELSE ' (left)' END AS assignee,
            t.due_date::text AS due_date,
            to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at,
            to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS updated_at
         FROM tasks t LEFT JOIN members m ON m.tenant_id = t.tenant_id AND m.id = t.assignee_id
         WHERE t.tenant_id = $1 ORDER BY t.id DESC LIMIT $2",
    )
    .bind(tenant)
    .bind(limit + 1)
    .fetch_all(pool.get_ref())
    .await;
    match rows {
        Ok(mut items) => {
            let next_cursor = (items.len() as i64 > limit).then(|| {
                items.truncate(limit as usize);
                items.last().map(|t| t.id.to_string()).unwrap_or_default()
            });
            HttpResponse::Ok().json(TaskPage { items, next_cursor })
        }
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// Where the cluster lives, for the bench's report.
pub fn describe(postgres: &Postgres) -> String {
    format!("PostgreSQL ({}) on 127.0.0.1:{}", postgres.bin.display(), postgres.port)
}
