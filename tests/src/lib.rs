//! `silo-e2e`: end-to-end tests of the whole stack. Each test starts the real application
//! (`silo_web::startup::Application`, as `silo serve` does) on port 0 over a fresh data
//! directory and talks HTTP to it.
//!
//! [`TestServer`], [`Visitor`] (a cookie-keeping HTTP client that fills in forms) and
//! [`http_get`] are the shared harness.

pub mod browser;
pub mod s3;
pub mod smtp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use silo_accounts::Accounts;
use silo_tenancy::Tenancy;
use silo_web::settings::Settings;
use silo_web::startup::{Application, ApplicationHandle};

/// Whether this test binary runs the control plane on PostgreSQL (a `*_on_postgres` binary).
pub fn on_postgres() -> bool {
    silo_core::db::testing::engine() == silo_core::db::Engine::Postgres
}

/// Whether this test runs with the control plane on PostgreSQL (a `*_on_postgres` binary): a
/// test about the embedded `control.db` itself (its bytes on disk, its copies in the store)
/// says so and returns, naming why.
pub fn skip_on_postgres(why: &str) -> bool {
    let skip = on_postgres();
    if skip {
        eprintln!("not run with the control plane on PostgreSQL: {why}");
    }
    skip
}

/// A running server over a temporary data directory.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its fleet (shared with the server).
    pub tenancy: Tenancy,
    /// Its people (shared with the server).
    pub accounts: Accounts,
    /// Its plans, limits and meter (shared with the server).
    pub billing: silo_billing::Billing,
    handle: ApplicationHandle,
    /// The application's run: done once it stopped and closed everything.
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose settings `configure` adjusts first.
    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        Self::start_listening(|settings, _| configure(settings)).await
    }

    /// Starts a server whose settings `configure` adjusts knowing the address it will listen
    /// on (e.g. for `server.public_url`).
    pub async fn start_listening(configure: impl FnOnce(&mut Settings, SocketAddr)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::for_data_dir(dir.path());
        // The control plane on PostgreSQL when this test binary runs on it (`*_on_postgres`).
        settings.fleet.control.url = silo_core::db::testing::control_url().await.map(silo_core::Secret::new);
        // The scheduler's first pass runs at start and would race the tests' own backups;
        // tests that want the loop turn it back on.
        settings.fleet.backup.schedule = false;
        // Likewise billing's (last month's run, today's dunning pass): jobs the tests did not ask for.
        settings.billing.schedule = false;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        configure(&mut settings, addr);
        let application = Application::build_on(settings, listener).await?;
        let accounts = application.accounts().clone();
        let billing = application.billing().clone();
        let tenancy = accounts.tenancy().clone();
        anyhow::ensure!(
            tenancy.control().is_embedded() == tenancy.settings().control.url.is_none(),
            "the control plane is not where the settings put it"
        );
        let handle = application.handle();
        let running = tokio::spawn(application.run_until_stopped());
        Ok(Self { addr, tenancy, accounts, billing, handle, running, _dir: dir })
    }

    /// The server's base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A new visitor (no cookies yet).
    pub fn visitor(&self) -> Visitor {
        Visitor::new(self.addr)
    }

    /// Signs up `email` with a new workspace `slug` and confirms the address through the
    /// emailed link; returns the signed-in visitor.
    pub async fn sign_up(&self, email: &str, slug: &str) -> anyhow::Result<Visitor> {
        let visitor = self.visitor();
        let fields = [
            ("email", email),
            ("name", email.split('@').next().unwrap_or(email)),
            ("password", PASSWORD),
            ("workspace", slug),
            ("slug", slug),
        ];
        let response = visitor.submit("/signup", "/signup", &fields).await?;
        anyhow::ensure!(
            response.status == 200 && response.body.contains("Check your email"),
            "sign-up failed: {} {}",
            response.status,
            response.body
        );
        let confirm = self.link_in_last_email(email, "/signup/confirm/").await?;
        let response = visitor.submit(&confirm, &confirm, &[("workspace", slug), ("slug", slug)]).await?;
        anyhow::ensure!(response.status == 303, "confirmation failed: {} {}", response.status, response.body);
        anyhow::ensure!(
            response.location.as_deref() == Some(&format!("/w/{slug}/")),
            "sign-up went to {:?}",
            response.location
        );
        Ok(visitor)
    }

    /// The path of the link whose path starts with `marker` in the newest email to
    /// `recipient` (links are absolute, on the server's public origin).
    pub async fn link_in_last_email(&self, recipient: &str, marker: &str) -> anyhow::Result<String> {
        let email = self.last_email(recipient).await?;
        let link = email
            .split_whitespace()
            .find(|w| w.contains(marker))
            .ok_or_else(|| anyhow::anyhow!("no {marker} link in the email to {recipient}: {email}"))?;
        Ok(link[link.find(marker).unwrap_or_default()..].to_owned())
    }

    /// Signs `email` in (with [`PASSWORD`]) as a new visitor.
    pub async fn sign_in(&self, email: &str) -> anyhow::Result<Visitor> {
        let visitor = self.visitor();
        let response =
            visitor.submit("/login", "/login", &[("email", email), ("password", PASSWORD)]).await?;
        anyhow::ensure!(response.status == 303, "sign-in failed: {} {}", response.status, response.body);
        Ok(visitor)
    }

    /// A new personal API token of `email` (already a member) for `slug`.
    pub async fn personal_token(&self, email: &str, slug: &str) -> anyhow::Result<String> {
        let scope = silo_accounts::TokenScope::Personal(slug.parse()?);
        Ok(self.accounts.tokens().issue(email, scope, "test").await?)
    }

    /// Makes an existing account a member of `slug` with `role` and returns a new personal API
    /// token for that workspace.
    pub async fn member_token(
        &self,
        email: &str,
        slug: &str,
        role: silo_accounts::Role,
    ) -> anyhow::Result<String> {
        let workspace: silo_core::TenantRef = slug.parse()?;
        self.accounts.memberships().add(&workspace, email, role, "test").await?;
        let scope = silo_accounts::TokenScope::Personal(workspace);
        Ok(self.accounts.tokens().issue(email, scope, "test").await?)
    }

    /// Makes an operator account and returns a new operator API token.
    pub async fn operator_token(&self, email: &str) -> anyhow::Result<String> {
        self.accounts.users().create(email, PASSWORD, None, "test").await?;
        self.accounts.users().grant_operator(email, "test").await?;
        Ok(self.accounts.tokens().issue(email, silo_accounts::TokenScope::Operator, "test").await?)
    }

    /// The newest email queued to `recipient`, with its link in place (while the outbox still
    /// holds it sealed).
    pub async fn last_email(&self, recipient: &str) -> anyhow::Result<String> {
        let emails = self.accounts.outbox().list(Some(recipient), 1).await?;
        let email = emails.into_iter().next().ok_or_else(|| anyhow::anyhow!("no email to {recipient}"))?;
        Ok(self.accounts.outbox().render(&email).await?)
    }

    /// Stops the application gracefully (as SIGTERM does) and waits until it closed
    /// everything.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop().await;
        self.running.await?
    }
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("malformed response: {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The number of tasks in a workspace's file and its `integrity_check` verdict (after a
/// refused write: nothing acknowledged lost, the file intact).
pub async fn tasks_and_integrity(tenancy: &Tenancy, slug: &str) -> anyhow::Result<(i64, String)> {
    let tenant = tenancy.tenant(&slug.parse()?).await?;
    let db = tenancy.db(tenant.id).await?;
    Ok(db.turn().await.call(|conn| {
        let count = conn.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
        Ok((count, conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
    })?)
}

/// Every file under `dir` whose bytes contain `needle` (a canary searched over a data
/// directory). A directory that vanishes during the walk (a backup's staging) is skipped.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

/// A visitor with its own cookie jar; redirects are not followed, so tests see them.
pub struct Visitor {
    client: reqwest::Client,
    base: String,
}

impl Visitor {
    /// A visitor of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self { client, base: format!("http://{addr}") }
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<Response> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = headers.get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
        Ok(Response { status, location, headers, body: response.text().await? })
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        Self::read(self.client.get(format!("{}{path}", self.base)).send().await?).await
    }

    /// POST a form as is (no token added).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Response> {
        Self::read(self.client.post(format!("{}{path}", self.base)).form(fields).send().await?).await
    }

    /// The form token of the page at `page`.
    pub async fn csrf(&self, page: &str) -> anyhow::Result<String> {
        let response = self.get(page).await?;
        csrf_of(&response.body).ok_or_else(|| {
            anyhow::anyhow!("no form token on {page} ({}): {}", response.status, response.body)
        })
    }

    /// Opens `page`, takes its form token and POSTs `fields` to `action`, like a browser.
    pub async fn submit(
        &self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let token = self.csrf(page).await?;
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// A request builder with this visitor's cookies (for custom headers).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends a built request.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Response> {
        Self::read(request.send().await?).await
    }
}

/// The first form token in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A JSON API client with a bearer token.
pub struct ApiClient {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the server at `addr`, with `token` if given.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{addr}/api/v1"),
            token: token.map(str::to_owned),
        }
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON (or null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let method: reqwest::Method = method.parse()?;
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, json))
    }

    /// Polls `GET /jobs/{id}` (an operator's client) until the job is done, failed or
    /// cancelled, for at most a minute; returns it.
    pub async fn wait_for_job(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, job) = self.call("GET", &format!("/jobs/{id}"), None).await?;
            anyhow::ensure!(status == 200, "GET /jobs/{id}: {status} {job}");
            if matches!(job["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                return Ok(job);
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the job did not finish: {job}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A test clock standing at the start of the month `months` before this one (what a test
/// needs to have existed that long is created then), and the present to set it back to.
pub fn clock_months_back(months: u32) -> (silo_core::TestClock, silo_core::Timestamp) {
    let present = silo_core::time::utc_now();
    let mut month = silo_billing::Period::of(present.as_str()).expect("now is a date");
    for _ in 0..months {
        month = month.previous();
    }
    let start = silo_core::Timestamp::parse(&month.start()).expect("a month starts at a timestamp");
    (silo_core::TestClock::at(&start), present)
}
