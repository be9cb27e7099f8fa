//! [`LocalStore`]: objects as files under a directory. A put writes a temporary file, fsyncs
//! it, renames it into place and fsyncs the directory, so a crash leaves either the old object
//! or the new one, never half of one.

use std::path::{Path, PathBuf};

use super::{StoreFuture, check_key};
use crate::{Error, Result};

/// Objects as files under a directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created when first written to).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where objects live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn put_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("object paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let temp = dir.join(format!(".{}.partial", uuid::Uuid::now_v7()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io("write object", path, e));
    }
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io("install object", path, e));
    }
    crate::sqlite::fsync_dir(dir)
}

fn list_files(root: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue; // partial writes
            }
            if entry.file_type().map_err(|e| Error::io("list", &path, e))?.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
    }
    keys.sort();
    Ok(keys)
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> StoreFuture<'static, T> {
    Box::pin(async move { tokio::task::spawn_blocking(f).await.expect("an object-store task panicked") })
}

impl super::ObjectStore for LocalStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        match self.path(key) {
            Ok(path) => blocking(move || put_file(&path, &bytes)),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        let owned = key.to_owned();
        match self.path(key) {
            Ok(path) => blocking(move || match std::fs::read(&path) {
                Ok(bytes) => Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ObjectMissing(owned)),
                Err(e) => Err(Error::io("read object", path, e)),
            }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        match self.path(key) {
            Ok(path) => blocking(move || match std::fs::remove_file(&path) {
                Ok(()) => {
                    crate::sqlite::fsync_dir(path.parent().expect("object paths have a parent"))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::io("delete object", path, e)),
            }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        let (root, prefix) = (self.root.clone(), prefix.to_owned());
        blocking(move || list_files(&root, &prefix))
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ObjectStore;

    #[tokio::test]
    async fn local_objects_put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store: Box<dyn ObjectStore> = Box::new(LocalStore::new(dir.path().join("objects")));
        assert!(store.list("").await.unwrap().is_empty(), "an empty store lists nothing");
        store.put("tenants/t1/backups/b1", b"one".to_vec()).await.unwrap();
        store.put("tenants/t1/backups/b2", b"two".to_vec()).await.unwrap();
        store.put("tenants/t2/backups/b1", b"other".to_vec()).await.unwrap();
        store.put("tenants/t1/backups/b1", b"one again".to_vec()).await.unwrap();
        assert_eq!(store.get("tenants/t1/backups/b1").await.unwrap(), b"one again");
        assert_eq!(
            store.list("tenants/t1/").await.unwrap(),
            ["tenants/t1/backups/b1", "tenants/t1/backups/b2"]
        );
        assert!(matches!(store.get("tenants/t1/backups/nope").await, Err(Error::ObjectMissing(_))));
        assert!(store.delete("tenants/t1/backups/b1").await.unwrap());
        assert!(!store.delete("tenants/t1/backups/b1").await.unwrap(), "deleting twice is fine");
        assert_eq!(store.list("tenants/").await.unwrap(), ["tenants/t1/backups/b2", "tenants/t2/backups/b1"]);
        assert!(matches!(store.put("../escape", vec![]).await, Err(Error::InvalidObjectKey(_))));
        assert!(!dir.path().join("escape").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("objects/tenants/t1/backups"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no partial files left");
    }
}
