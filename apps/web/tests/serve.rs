//! `silo serve` as a process: it starts on its defaults in a fresh directory, answers
//! `/healthz`, stops cleanly on SIGTERM, and holds the data directory against CLI purges.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A running `silo serve` and its log.
struct Server {
    child: Child,
    log: std::sync::mpsc::Receiver<String>,
}

/// Starts `silo serve` in `dir` (data in `dir/data`); returns the process and its address.
fn start_server(dir: &Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("SILO_DATA_DIR")
        .env("SILO_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread so a server that never starts fails the test instead of hanging it.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let addr = loop {
        let line =
            log.recv_timeout(Duration::from_secs(30)).expect("the server logs its address within 30 s");
        if line.contains("silo listening") {
            let addr = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next());
            break addr.expect("addr=… in the log line").to_owned();
        }
    };
    (Server { child, log }, addr)
}

/// SIGTERM: the process exits successfully after the application's ordered shutdown (server,
/// then the background loops, then the tenant handles and the control plane).
fn stop(mut server: Server) {
    let killed = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status}");
    let log: Vec<String> = server.log.iter().collect();
    let at = |needle: &str| {
        log.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} in {log:#?}"))
    };
    let stopping = at("stopping: the server has stopped accepting");
    let scheduler = at("backup scheduler stopped");
    let closed = at("stopped: tenant handles and the control plane are closed");
    assert!(stopping < scheduler && scheduler < closed, "{log:#?}");
}

fn silo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(args)
        .current_dir(dir)
        .env_remove("SILO_DATA_DIR")
        .output()
        .unwrap()
}

#[test]
fn serve_starts_on_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_server(dir.path());
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(dir.path().join("data/control.db").exists(), "the default data dir is ./data");
    stop(child);
}

#[test]
fn a_running_server_holds_the_data_directory_against_purges_and_second_servers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(silo(d, &["tenant", "create", "held"]).status.success());
    let (child, _) = start_server(d);

    let purge = silo(d, &["tenant", "delete", "held", "--purge"]);
    assert!(!purge.status.success());
    let stderr = String::from_utf8_lossy(&purge.stderr);
    assert!(stderr.contains("cannot purge tenant `held`") && stderr.contains("silo serve"), "{stderr}");
    let shown: serde_json::Value =
        serde_json::from_slice(&silo(d, &["tenant", "show", "held", "--json"]).stdout).unwrap();
    assert_eq!(shown["status"], "active", "a refused purge changes nothing");

    let second = silo(d, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another silo process"));

    stop(child);
    assert!(silo(d, &["tenant", "delete", "held", "--purge"]).status.success());
}
