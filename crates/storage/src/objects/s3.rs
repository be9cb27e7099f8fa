//! [`S3Store`]: objects in an S3 bucket (AWS or any S3-compatible service) through
//! `aws-sdk-s3`. Large objects go up in parts (multipart upload, aborted on failure); every
//! request is retried with exponential backoff by the SDK's standard retry policy.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use serde::{Deserialize, Serialize};

use super::{StoreFuture, check_key};
use crate::{Error, Result};

/// Objects larger than this are uploaded in parts of this size (S3's minimum part is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where and how to reach the bucket (`[backup.s3]` in `silo.toml`, `SILO_BACKUP__S3__…`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket (required).
    pub bucket: String,
    /// A key prefix inside the bucket (`silo` → `silo/tenants/…`); empty for none.
    pub prefix: String,
    /// The region (`us-east-1` when empty and `AWS_REGION` is unset).
    pub region: String,
    /// An endpoint URL for S3-compatible services (MinIO, R2, …); AWS when absent.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible services need.
    pub path_style: bool,
    /// Access key id; `AWS_ACCESS_KEY_ID` when absent.
    pub access_key_id: Option<String>,
    /// Secret key; `AWS_SECRET_ACCESS_KEY` when absent. Never printed.
    pub secret_access_key: Option<silo_core::Secret>,
    /// How many times a request is tried before it fails (SDK standard retries, with backoff).
    pub max_attempts: Option<u32>,
}

/// Objects in an S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn failed(action: &str, key: &str, error: impl std::error::Error) -> Error {
    Error::ObjectStore(format!("S3 {action} `{key}` failed: {}", DisplayErrorContext(error)))
}

impl S3Store {
    /// A client for `settings`; credentials come from the settings, else from the standard AWS
    /// environment variables. Nothing is sent yet (see [`super::probe`]).
    pub fn new(settings: &S3Settings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(Error::ObjectStore("backup.s3.bucket is required with backup.store = \"s3\"".into()));
        }
        let access = settings.access_key_id.clone().or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret = settings
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_owned())
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let (Some(access), Some(secret)) = (access, secret) else {
            return Err(Error::ObjectStore(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or backup.s3.access_key_id / secret_access_key)"
                    .into(),
            ));
        };
        let region = Some(settings.region.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let credentials = Credentials::new(access, secret, env("AWS_SESSION_TOKEN"), None, "silo");
        // rustls on ring, the crypto library the rest of Silo uses (see the workspace manifest).
        let tls = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring);
        let mut config = aws_sdk_s3::Config::builder()
            .http_client(aws_smithy_http_client::Builder::new().tls_provider(tls).build_https())
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            // Silo checks its own SHA-256 of every object; the SDK's default CRC trailers are
            // not understood by every S3-compatible service.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.unwrap_or(4).max(1))
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let prefix = settings.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            check_key(&prefix)?;
        }
        Ok(Self { client: Client::from_conf(config.build()), bucket: settings.bucket.clone(), prefix })
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) })
    }

    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let full = self.full_key(key)?;
        if bytes.len() <= PART_SIZE {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| failed("put", key, e))?;
            return Ok(());
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| failed("multipart start", key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(key, &full, &upload_id, &bytes).await;
        if result.is_err() {
            // Parts of an unfinished upload are billed until aborted.
            let abort =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&upload_id);
            if let Err(e) = abort.send().await {
                tracing::warn!(key, error = %DisplayErrorContext(e), "aborting a multipart upload failed");
            }
        }
        result
    }

    async fn upload_parts(&self, key: &str, full: &str, upload_id: &str, bytes: &[u8]) -> Result<()> {
        let mut parts = Vec::new();
        for (index, chunk) in bytes.chunks(PART_SIZE).enumerate() {
            let number = i32::try_from(index + 1).expect("at most 10,000 parts");
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| failed("upload part", key, e))?;
            parts.push(CompletedPart::builder().set_e_tag(part.e_tag).part_number(number).build());
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| failed("multipart complete", key, e))?;
        Ok(())
    }

    async fn get_object(&self, key: &str) -> Result<Vec<u8>> {
        let full = self.full_key(key)?;
        let output = match self.client.get_object().bucket(&self.bucket).key(&full).send().await {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(Error::ObjectMissing(key.to_owned()));
            }
            Err(e) => return Err(failed("get", key, e)),
        };
        let body = output.body.collect().await.map_err(|e| failed("read", key, e))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn delete_object(&self, key: &str) -> Result<bool> {
        let full = self.full_key(key)?;
        // S3 deletes are idempotent and do not say whether there was an object: ask first.
        let existed = match self.client.head_object().bucket(&self.bucket).key(&full).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(e) => return Err(failed("head", key, e)),
        };
        if existed {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| failed("delete", key, e))?;
        }
        Ok(existed)
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<String>> {
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let full_prefix =
            if self.prefix.is_empty() { prefix.to_owned() } else { format!("{}/{prefix}", self.prefix) };
        let mut keys = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(&full_prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("list", prefix, e))?;
            keys.extend(
                page.contents().iter().filter_map(|o| o.key()).map(|k| k[strip.min(k.len())..].to_owned()),
            );
        }
        keys.sort();
        Ok(keys)
    }
}

impl super::ObjectStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(self.put_object(key, bytes))
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(self.get_object(key))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.delete_object(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(self.list_objects(prefix))
    }

    fn describe(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("s3://{}", self.bucket),
            prefix => format!("s3://{}/{prefix}", self.bucket),
        }
    }
}
