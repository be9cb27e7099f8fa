//! `silo-e2e`: end-to-end tests of the whole stack. Each test starts the real server
//! (`silo_web::server::start`) on port 0 over a fresh data directory and talks HTTP to it.
//!
//! [`TestServer`] and [`http_get`] are the shared harness.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use silo_tenancy::{Settings, Tenancy};

/// A running server over a temporary data directory.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its tenancy layer (shared with the server).
    pub tenancy: Tenancy,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let tenancy = Tenancy::open(Settings::for_data_dir(dir.path())).await?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = silo_web::server::start(tenancy.clone(), listener)?;
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { addr, tenancy, handle, _dir: dir })
    }

    /// Stops the server gracefully.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.tenancy.shutdown().await;
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
