//! Object stores for backups: one trait, [`ObjectStore`], over whole objects addressed by key
//! (`tenants/<uuid>/backups/<id>.zst.enc`-like paths of `[a-z0-9._-]` segments). Keys carry no
//! slug or personal data; callers build them from ids.
//!
//! Two implementations: [`LocalStore`] (the embedded default, `<data_dir>/objects`) and
//! [`S3Store`] (any S3-compatible service through `aws-sdk-s3`).

use std::future::Future;
use std::pin::Pin;

mod local;
mod s3;

pub use local::LocalStore;
pub use s3::{PART_SIZE, S3Settings, S3Store};

use crate::{Error, Result};

/// A boxed future of the store's operations (keeps [`ObjectStore`] usable as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Whole-object storage.
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing any object there.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()>;
    /// The object under `key` ([`Error::ObjectMissing`] if none).
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u8>>;
    /// Removes the object under `key`; returns whether there was one.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;
    /// Keys starting with `prefix`, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>>;
    /// Where the objects are, for messages (`/srv/silo/objects`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// Writes, reads back and deletes a probe object: a clear error at start when the store
/// cannot be reached or written, rather than at the first backup.
pub async fn probe(store: &dyn ObjectStore) -> Result<()> {
    let key = format!("probe/{}", uuid::Uuid::now_v7());
    let payload = b"silo object store probe".to_vec();
    let checked = async {
        store.put(&key, payload.clone()).await?;
        if store.get(&key).await? != payload {
            return Err(Error::ObjectStore(
                "the probe object read back differs from what was written".into(),
            ));
        }
        store.delete(&key).await.map(drop)
    }
    .await;
    checked
        .map_err(|e| Error::ObjectStore(format!("the backup store {} is not usable: {e}", store.describe())))
}

/// Checks an object key: `/`-separated segments of `[a-z0-9._-]`, no empty, `.` or `..`
/// segment, at most 512 bytes.
pub fn check_key(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if valid { Ok(()) } else { Err(Error::InvalidObjectKey(key.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["a", "tenants/0190-ab/backups/1.zst.enc", "x_y-z.9"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in
            ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "Upper", "a b", "a\\b", "é", &"a".repeat(513)]
        {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
