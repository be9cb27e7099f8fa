//! Point reads of `control.db` on the calling thread, for the questions a request asks when
//! the [directory](crate::directory) does not know the answer yet: whose token is this, which
//! tenant is this slug, what role has this account there.
//!
//! Through sqlx each of those reads is a hand-off to a connection's worker thread and back
//! (~100 µs idle, see `cache/handle.rs`); on a busy 2-core machine the worker thread waits for
//! a core, and a request's first use of a tenant (three such reads) took 10–20 ms: at 10,000
//! tenants those first uses were the Zipf p99 (`silo-bench http --wrk`). The same reads on a
//! rusqlite connection run in microseconds where the request already runs, like a tenant's
//! statements do. Writes, and every other control-plane read, stay on sqlx.
//!
//! The connections are read-only; in WAL mode a reader never waits for the writer, and each
//! statement is its own read transaction, so an idle connection holds no snapshot that would
//! keep a checkpoint from truncating the WAL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// Idle connections kept for reuse. A read that finds none opens one (a burst on many
/// threads); past this many the extra ones close after their read.
const KEEP: usize = 4;

/// A few read-only rusqlite connections to `control.db`, lent out one per read.
#[derive(Debug)]
pub(crate) struct InlineReaders {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReaders {
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::with_capacity(KEEP)) }
    }

    /// Runs `f` (a short read: cached statements, a few rows) on an idle connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let lent = self.idle.lock().pop();
        let conn = match lent {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        let surplus = {
            let mut idle = self.idle.lock();
            if idle.len() < KEEP {
                idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        // Closed outside the lock.
        drop(surplus);
        result
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // A reader waits only while a checkpoint resets the WAL index: briefly.
        conn.busy_timeout(Duration::from_secs(1))?;
        conn.pragma_update(None, "trusted_schema", "OFF")?;
        Ok(conn)
    }
}
