//! `silo serve` as a process: it starts on its defaults in a fresh directory, answers
//! `/healthz`, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn serve_starts_on_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
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
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(dir.path().join("data/control.db").exists(), "the default data dir is ./data");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status}");
}
