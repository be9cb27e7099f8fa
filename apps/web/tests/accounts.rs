//! The account commands of the real `silo` binary: passwords on stdin, operators, members,
//! tokens, and their errors.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn silo_with_stdin(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(args)
        .env("SILO_DATA_DIR", data)
        .envs(common::control_env(data))
        .current_dir(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn silo(data: &Path, args: &[&str]) -> Output {
    silo_with_stdin(data, args, "")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn operators_users_members_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = "correct horse battery staple\n";

    stdout(&silo_with_stdin(d, &["admin", "create", "op@example.com", "--password-stdin"], pw));
    let token = stdout(&silo(d, &["admin", "token", "op@example.com"]));
    assert!(token.trim().starts_with("silo_") && token.trim().len() == 69, "{token}");

    stdout(&silo(d, &["tenant", "create", "acme"]));
    let created = stdout(&silo_with_stdin(
        d,
        &[
            "user",
            "create",
            "ada@example.com",
            "--password-stdin",
            "--name",
            "Ada",
            "--tenant",
            "acme",
            "--role",
            "owner",
        ],
        pw,
    ));
    assert!(created.contains("added ada@example.com to acme as owner"), "{created}");
    let members = stdout(&silo(
        d,
        &["tenant", "sql", "acme", "SELECT email, display_name, role FROM members", "--json"],
    ));
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert_eq!(members["rows"][0]["email"], "ada@example.com");
    assert_eq!(members["rows"][0]["role"], "owner");

    stdout(&silo_with_stdin(d, &["user", "create", "bob@example.com", "--password-stdin"], pw));
    assert!(
        stderr(&silo(d, &["user", "token", "bob@example.com", "--tenant", "acme"])).contains("not a member")
    );
    stdout(&silo(d, &["member", "add", "acme", "bob@example.com", "--role", "admin"]));
    let personal = stdout(&silo(d, &["user", "token", "bob@example.com", "--tenant", "acme"]));
    assert!(personal.trim().starts_with("silo_"));
    assert_ne!(personal, token);
}

#[test]
fn account_commands_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = "correct horse battery staple\n";
    // The password is never an argument.
    let no_flag = silo(d, &["admin", "create", "op@example.com"]);
    assert!(!no_flag.status.success());
    assert!(String::from_utf8_lossy(&no_flag.stderr).contains("--password-stdin"));
    assert!(
        stderr(&silo_with_stdin(d, &["admin", "create", "op@example.com", "--password-stdin"], ""))
            .contains("no password")
    );
    assert!(
        stderr(&silo_with_stdin(d, &["admin", "create", "op@example.com", "--password-stdin"], "short\n"))
            .contains("at least")
    );
    assert!(
        stderr(&silo_with_stdin(d, &["admin", "create", "not-an-email", "--password-stdin"], pw))
            .contains("not a valid email")
    );
    stdout(&silo_with_stdin(d, &["user", "create", "ada@example.com", "--password-stdin"], pw));
    assert!(
        stderr(&silo_with_stdin(d, &["user", "create", "ADA@example.com", "--password-stdin"], pw))
            .contains("already exists")
    );
    assert!(stderr(&silo(d, &["admin", "token", "ada@example.com"])).contains("not an operator"));
    assert!(
        stderr(&silo(d, &["admin", "token", "ghost@example.com"]))
            .contains("no account for `ghost@example.com`")
    );
    assert!(
        stderr(&silo(d, &["member", "add", "nowhere", "ada@example.com"])).contains("no tenant `nowhere`")
    );
    stdout(&silo(d, &["tenant", "create", "acme"]));
    assert!(
        stderr(&silo(d, &["member", "add", "acme", "ada@example.com", "--role", "king"]))
            .contains("unknown role")
    );
    // A bad --tenant is refused before the account is created.
    let early = silo_with_stdin(
        d,
        &["user", "create", "eve@example.com", "--password-stdin", "--tenant", "nowhere"],
        pw,
    );
    assert!(stderr(&early).contains("no tenant `nowhere`"));
    assert!(stderr(&silo(d, &["admin", "token", "eve@example.com"])).contains("no account"));
}
