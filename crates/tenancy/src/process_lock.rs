//! The data-directory lock: one `silo serve` per data directory, and no CLI file operation
//! (purge) while a server runs on it.
//!
//! Leases are per process: a purge run from the CLI cannot see the server's open handles, and
//! unlinking a file the server still writes to would lose those writes. So the server holds an
//! exclusive advisory lock on `<data_dir>/silo.lock` for its lifetime, and CLI purges take the
//! same lock for theirs; whoever comes second gets a clear error instead.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A held lock on a data directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock without waiting; `purpose` names the caller in the error a second
    /// process gets.
    pub fn acquire(data_dir: &Path, purpose: &str) -> Result<Self> {
        let path = data_dir.join("silo.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "cannot {purpose}: another silo process holds {} (a running `silo serve`, or another \
                 `silo` command); stop it first",
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::Config(format!("cannot lock {}: {e}", path.display()))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), "serve").unwrap();
        let err = DataDirLock::acquire(dir.path(), "purge tenant `acme`").unwrap_err();
        assert!(matches!(err, Error::Busy(_)));
        assert!(err.to_string().contains("cannot purge tenant `acme`"), "{err}");
        drop(first);
        DataDirLock::acquire(dir.path(), "purge").unwrap();
    }
}
