//! Helpers shared by the tests that run the real `silo` binary over a temp data directory.

#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `program` with the environment of a `silo` run over `data` (another program: to wrap
/// `silo` in a shell, e.g. to set limits).
pub fn program_in(program: &str, data: &Path) -> Command {
    let mut command = Command::new(program);
    command.env("SILO_DATA_DIR", data).env_remove("SILO_LOG").env_remove("SILO_MASTER_KEY").current_dir(data);
    command
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
