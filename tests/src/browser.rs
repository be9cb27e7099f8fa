//! Headless Chromium for the browser tests: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) with fantoccini. Screenshots go to `target/e2e/`.
//!
//! Without a browser the tests are skipped with a message written straight to the terminal
//! (not captured by the test harness); with `SILO_REQUIRE_BROWSER=1` (set by `.ci/run`) a
//! missing browser is a failure instead.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver and a browser session on it.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

/// Where screenshots go: `<workspace>/target/e2e/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` (after saying why) when they are
    /// not installed and not required.
    pub async fn launch(test: &str) -> anyhow::Result<Option<Self>> {
        Self::launch_with(test, &[]).await
    }

    /// [`Browser::launch`] with more Chromium flags (e.g. `--host-resolver-rules=…`).
    pub async fn launch_with(test: &str, flags: &[String]) -> anyhow::Result<Option<Self>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_launch(test, flags).await {
                // A loaded 2-core machine occasionally misses chromedriver's session start.
                Err(e) if attempt < 3 => {
                    let _ = writeln!(std::io::stderr().lock(), "browser start failed ({e:#}); retrying");
                }
                result => return result,
            }
        }
    }

    async fn try_launch(test: &str, flags: &[String]) -> anyhow::Result<Option<Self>> {
        let chromium = std::env::var("SILO_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
        let driver = std::env::var("SILO_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
        if !Path::new(&chromium).exists() || !Path::new(&driver).exists() {
            let reason =
                format!("{chromium} or {driver} not found (apt-get install chromium chromium-driver)");
            if std::env::var("SILO_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                anyhow::bail!("browser required but {reason}");
            }
            // Straight to the terminal: the harness captures print macros of passing tests.
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED browser test {test}: {reason}");
            return Ok(None);
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("chromedriver did not start on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir()?;
        // Flags the machine needs: no sandbox as root, and no background networking (the
        // network is closed; only loopback answers).
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(flags);
        let mut capabilities = serde_json::Map::new();
        capabilities
            .insert("goog:chromeOptions".into(), serde_json::json!({ "binary": chromium, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await {
            Ok(client) => client,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("cannot start a Chromium session: {e}");
            }
        };
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots)?;
        Ok(Some(Self { client, driver: child, _profile: profile, shots }))
    }

    /// Opens a URL.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        Ok(())
    }

    /// Types into the field matching `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field =
            self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    /// Clicks the link or button matching `css` and waits until the page it leads to has
    /// replaced the current one (the old document's root goes stale).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element =
            self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await?;
        let old_root = self.client.find(Locator::Css("html")).await?;
        element.click().await?;
        let started = Instant::now();
        while old_root.tag_name().await.is_ok() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "clicking {css} did not load a page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The new document is there; wait for it to finish loading.
        self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("body")).await?;
        Ok(())
    }

    /// Opens a disclosure (`<details>`) by its summary: a click that loads no page.
    pub async fn open_details(&self, css: &str) -> anyhow::Result<()> {
        let summary =
            self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await?;
        summary.click().await?;
        Ok(())
    }

    /// Picks an option of a `<select>` by its value.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let element = self.client.find(Locator::Css(css)).await?;
        element.select_by_value(value).await?;
        Ok(())
    }

    /// The current URL, whole.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// The current path (and query).
    pub async fn path(&self) -> anyhow::Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// The visible text of the page's `<main>`.
    pub async fn text(&self) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css("main")).await?.text().await?)
    }

    /// The page's HTML.
    pub async fn html(&self) -> anyhow::Result<String> {
        Ok(self.client.source().await?)
    }

    /// Saves a screenshot as `target/e2e/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
