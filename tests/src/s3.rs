//! A real S3 protocol server for tests: `s3s` over `s3s-fs` (buckets are directories), served
//! by hyper on a loopback port, with SigV4 authentication on. The backup suite talks to it
//! with `aws-sdk-s3` exactly as it would talk to AWS.

use std::net::SocketAddr;

use silo_storage::objects::S3Settings;
use tokio::net::TcpListener;

/// The test server's credentials.
pub const ACCESS_KEY: &str = "silo-test-access";
/// The test server's secret.
pub const SECRET_KEY: &str = "silo-test-secret-key";
/// The bucket every test server has.
pub const BUCKET: &str = "silo-backups";

/// An S3 server on a loopback port, stopped when dropped.
pub struct S3Server {
    /// Where it listens.
    pub addr: SocketAddr,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Starts a server on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?).await
    }

    /// Starts a server on `addr` (a port chosen earlier, to bring a store "back").
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join(BUCKET))?;
        let fs = s3s_fs::FileSystem::new(root.path()).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Ok(Self { addr, root, task })
    }

    /// Settings for Silo's S3 store against this server.
    pub fn settings(&self) -> S3Settings {
        settings_for(self.addr)
    }

    /// The directory holding the bucket's files (to inspect or tamper with objects).
    pub fn bucket_dir(&self) -> std::path::PathBuf {
        self.root.path().join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings for an S3 store at `addr` (which may have no server: an unreachable store).
pub fn settings_for(addr: SocketAddr) -> S3Settings {
    S3Settings {
        bucket: BUCKET.into(),
        prefix: "silo".into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://{addr}")),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(silo_core::Secret::new(SECRET_KEY)),
        max_attempts: Some(2),
    }
}
