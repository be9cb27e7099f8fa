//! Helpers shared by the tests that run the real `silo` binary over a temp data directory.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// `program` with the environment of a `silo` run over `data` (another program: to wrap
/// `silo` in a shell, e.g. to set limits).
pub fn program_in(program: &str, data: &Path) -> Command {
    let mut command = Command::new(program);
    command.env("SILO_DATA_DIR", data).env_remove("SILO_LOG").env_remove("SILO_MASTER_KEY").current_dir(data);
    command.env_remove("SILO_CONTROL__URL").envs(control_env(data));
    command
}

/// The environment that puts a `silo` run over `data` on its control plane: nothing for
/// `control.db`, `SILO_CONTROL__URL` on PostgreSQL.
pub fn control_env(data: &Path) -> Vec<(&'static str, String)> {
    control_url(data).map(|url| ("SILO_CONTROL__URL", url)).into_iter().collect()
}

/// The control plane of the data directory `data`, for a test to read what a `silo` run
/// stored: `control.db` (read-only) or its PostgreSQL database.
pub async fn control(data: &Path) -> silo_core::db::Db {
    match control_url(data) {
        Some(url) => silo_core::db::Db::postgres(&url, 1).await.unwrap(),
        None => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("control.db")).read_only(true);
            silo_core::db::Db::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
        }
    }
}

/// The fleet's settings over `data` for a test that opens it in its own process, on the same
/// control plane as the `silo` runs over `data`.
pub fn fleet_settings(data: &Path) -> silo_tenancy::Settings {
    let mut settings = silo_tenancy::Settings::for_data_dir(data);
    settings.control.url = control_url(data).map(silo_core::Secret::new);
    settings
}

/// Whether this test binary runs the control plane on PostgreSQL (a `*_on_postgres` binary).
pub fn on_postgres() -> bool {
    silo_core::db::testing::engine() == silo_core::db::Engine::Postgres
}

/// The control plane of the data directory `data` when this test binary runs it on
/// PostgreSQL (a `*_on_postgres` binary): one database per data directory, for every `silo`
/// run over it.
pub fn control_url(data: &Path) -> Option<String> {
    static URLS: Mutex<BTreeMap<PathBuf, Option<String>>> = Mutex::new(BTreeMap::new());
    if silo_core::db::testing::engine() == silo_core::db::Engine::Sqlite {
        return None;
    }
    let mut urls = URLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    urls.entry(data.to_owned())
        .or_insert_with(|| {
            // A runtime of its own, on a thread of its own: the caller may be inside one.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(silo_core::db::testing::postgres_database())
            })
            .join()
            .unwrap()
        })
        .clone()
}

/// `silo` over `data`, not yet run.
pub fn command(data: &Path) -> Command {
    program_in(env!("CARGO_BIN_EXE_silo"), data)
}

/// Runs `silo args…` over `data`.
pub fn silo(data: &Path, args: &[&str]) -> Output {
    command(data).args(args).output().expect("run silo")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = silo(data, args);
    assert!(out.status.success(), "silo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must print one JSON document.
pub fn json(data: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(data, args)).expect("one JSON document on stdout")
}

/// Runs a command that must fail with a clean error; returns its stderr.
pub fn fails(data: &Path, args: &[&str]) -> String {
    let out = silo(data, args);
    assert!(!out.status.success(), "silo {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    stderr
}
