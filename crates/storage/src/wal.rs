//! Reading committed transactions out of a database's write-ahead log (`-wal` file), for
//! continuous backup: each [`Commit`] is the pages one transaction wrote and the database's
//! size after it, in the order SQLite committed them.
//!
//! The format is SQLite's (<https://www.sqlite.org/fileformat2.html#walformat> describes it;
//! nothing here needs SQLite's code): a 32-byte header (magic, version, page size, checkpoint
//! sequence, two salts, a checksum), then frames of a 24-byte header (page number, the
//! database size in pages for the frame that commits a transaction and 0 otherwise, the
//! salts, a checksum) and one page. Each frame's checksum continues the previous one's, so a
//! frame is part of the log only if its salts match the header's and its checksum checks;
//! the log ends at the last valid frame that commits. Frames after it are a transaction that
//! never committed (a rolled-back spill) or what an older log left behind.
//!
//! A reader resumes where it stopped ([`WalPosition`]: the salts, the frames read, the running
//! checksum), so following an active database costs only its new frames. When the salts
//! change the log was restarted after a checkpoint: the reader starts again at its header and
//! says so ([`WalRead::restarted`]); whoever checkpoints decides whether frames were lost.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::{Error, Result};

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;

/// Where a reader stopped in a log: after `frames` frames of the log with these salts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalPosition {
    /// The log's salts (they change when it restarts).
    pub salt: [u32; 2],
    /// Frames read (all of them up to a commit).
    pub frames: u32,
    /// The running checksum after the last frame read (the header's when none).
    checksum: [u32; 2],
    /// The database's page size.
    pub page_size: u32,
    big_endian: bool,
}

/// One committed transaction: the pages it wrote, in log order (a page may appear more
/// than once; the last one wins), and the database's size in pages after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// `(page number, page)` pairs.
    pub pages: Vec<(u32, Vec<u8>)>,
    /// The database's size in pages once committed.
    pub db_pages: u32,
    /// The 1-based index in the log of the frame that committed it.
    pub end_frame: u32,
}

/// What [`read_commits`] found.
#[derive(Debug)]
pub struct WalRead {
    /// Transactions committed after the position given, oldest first.
    pub commits: Vec<Commit>,
    /// Where the next read resumes (`None`: the log is empty, nothing to resume).
    pub position: Option<WalPosition>,
    /// The log was restarted (new salts) since the position given: `commits` start at its
    /// first frame, and whatever followed the old position was never read here.
    pub restarted: bool,
}

/// Reads the transactions committed to the log at `wal` after `from` (from the start when
/// `None`). A missing or empty log has none. The caller must keep the log from being
/// checkpointed and restarted while this runs (hold the database's one connection).
pub fn read_commits(wal: &Path, from: Option<WalPosition>) -> Result<WalRead> {
    let mut file = match std::fs::File::open(wal) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(WalRead { commits: Vec::new(), position: None, restarted: from.is_some() });
        }
        Err(e) => return Err(Error::io("open", wal, e)),
    };
    let mut header = [0u8; HEADER];
    if !read_full(&mut file, &mut header).map_err(|e| Error::io("read", wal, e))? {
        // Empty (truncated by a checkpoint): no transaction since.
        return Ok(WalRead { commits: Vec::new(), position: None, restarted: from.is_some() });
    }
    let start = parse_header(&header).ok_or_else(|| Error::Corrupt {
        path: wal.to_owned(),
        detail: "the write-ahead log's header is not valid".into(),
    })?;
    let (mut position, restarted) = match from {
        Some(from) if from.salt == start.salt && from.page_size == start.page_size => (from, false),
        Some(_) => (start, true),
        None => (start, false),
    };
    let frame_size = FRAME_HEADER + position.page_size as usize;
    let offset = HEADER as u64 + u64::from(position.frames) * frame_size as u64;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", wal, e))?;

    let mut commits = Vec::new();
    let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
    let (mut frames, mut checksum) = (position.frames, position.checksum);
    let mut frame = vec![0u8; frame_size];
    while read_full(&mut file, &mut frame).map_err(|e| Error::io("read", wal, e))? {
        let word = |at: usize| u32::from_be_bytes(frame[at..at + 4].try_into().expect("4 bytes"));
        if [word(8), word(12)] != position.salt {
            break;
        }
        let sum = checksum_of(checksum, &frame[..8], position.big_endian);
        let sum = checksum_of(sum, &frame[FRAME_HEADER..], position.big_endian);
        if sum != [word(16), word(20)] {
            break;
        }
        checksum = sum;
        frames += 1;
        pending.push((word(0), frame[FRAME_HEADER..].to_vec()));
        let db_pages = word(4);
        if db_pages != 0 {
            commits.push(Commit { pages: std::mem::take(&mut pending), db_pages, end_frame: frames });
            position.frames = frames;
            position.checksum = checksum;
        }
    }
    Ok(WalRead { commits, position: Some(position), restarted })
}

/// The position at the end of a header (no frame read yet).
fn parse_header(header: &[u8; HEADER]) -> Option<WalPosition> {
    let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let big_endian = match word(0) {
        MAGIC_LE => false,
        MAGIC_BE => true,
        _ => return None,
    };
    let page_size = word(8);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    let checksum = checksum_of([0, 0], &header[..24], big_endian);
    if checksum != [word(24), word(28)] {
        return None;
    }
    Some(WalPosition { salt: [word(16), word(20)], frames: 0, checksum, page_size, big_endian })
}

/// SQLite's WAL checksum: over 32-bit words (in the byte order the magic names), two running
/// sums that feed each other.
fn checksum_of(start: [u32; 2], bytes: &[u8], big_endian: bool) -> [u32; 2] {
    let [mut s0, mut s1] = start;
    for pair in bytes.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().expect("4 bytes");
            if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    [s0, s1]
}

/// Fills `buf`; `false` when the file ends first (a partial frame is not a frame).
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

/// Writes committed transactions into a database file, as a checkpoint would: each page at
/// its place, then the file cut or grown to the commit's size. `file` is a closed database
/// (no connection may have it open); it is fsynced at the end.
pub fn apply_commits<'a>(file: &Path, commits: impl IntoIterator<Item = &'a Commit>) -> Result<()> {
    let db = std::fs::OpenOptions::new().write(true).open(file).map_err(|e| Error::io("open", file, e))?;
    write_commits(&db, file, commits)?;
    db.sync_all().map_err(|e| Error::io("fsync", file, e))
}

/// [`apply_commits`] on an open file (`file` names it in errors), without the fsync: a
/// replay of many segments syncs once at its end.
pub fn write_commits<'a>(
    db: &std::fs::File,
    file: &Path,
    commits: impl IntoIterator<Item = &'a Commit>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    for commit in commits {
        let mut page_size = 0u64;
        for (number, page) in &commit.pages {
            page_size = page.len() as u64;
            let at = u64::from(number.saturating_sub(1)) * page_size;
            db.write_all_at(page, at).map_err(|e| Error::io("write", file, e))?;
        }
        if page_size != 0 {
            db.set_len(u64::from(commit.db_pages) * page_size).map_err(|e| Error::io("resize", file, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in WAL mode whose log is never checkpointed (so every commit stays in it).
    fn logged(path: &Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x TEXT);",
        )
        .unwrap();
        conn
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut statement = conn.prepare("SELECT x FROM t ORDER BY rowid").unwrap();
        statement.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn commits_replayed_on_a_copy_reproduce_each_state() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.db");
        let conn = logged(&source);
        // The base: the database as of now, checkpointed into a copy of the file.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let base = dir.path().join("base.db");
        std::fs::copy(&source, &base).unwrap();
        let wal = dir.path().join("source.db-wal");

        conn.execute("INSERT INTO t VALUES ('one')", []).unwrap();
        let first = read_commits(&wal, None).unwrap();
        assert_eq!(first.commits.len(), 1);
        assert!(!first.restarted);
        // A big transaction (many pages), a deletion that frees pages, and one rolled back.
        conn.execute_batch(
            "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT printf('%0500d', i) FROM n; COMMIT;",
        )
        .unwrap();
        conn.execute("DELETE FROM t WHERE rowid > 10", []).unwrap();
        conn.execute_batch("BEGIN; INSERT INTO t VALUES ('never'); ROLLBACK;").unwrap();
        conn.execute("INSERT INTO t VALUES ('last')", []).unwrap();
        let next = read_commits(&wal, first.position).unwrap();
        assert_eq!(next.commits.len(), 3, "the rolled-back transaction wrote no commit");
        assert!(next.commits[0].pages.len() > 100, "{}", next.commits[0].pages.len());
        let again = read_commits(&wal, next.position).unwrap();
        assert!(again.commits.is_empty(), "nothing new");
        assert_eq!(again.position, next.position);

        // Replayed one commit at a time, the copy goes through the source's states.
        let replica = dir.path().join("replica.db");
        std::fs::copy(&base, &replica).unwrap();
        apply_commits(&replica, &first.commits).unwrap();
        assert_eq!(rows(&replica), ["one"]);
        apply_commits(&replica, &next.commits[..1]).unwrap();
        assert_eq!(rows(&replica).len(), 3001);
        apply_commits(&replica, &next.commits[1..]).unwrap();
        let expected = rows(&source);
        assert_eq!(expected.len(), 11);
        assert_eq!(expected.last().map(String::as_str), Some("last"));
        assert_eq!(rows(&replica), expected);
        assert_eq!(std::fs::metadata(&replica).unwrap().len(), {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            std::fs::metadata(&source).unwrap().len()
        });
        let check: String = rusqlite::Connection::open(&replica)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_restarted_log_is_noticed_and_a_damaged_frame_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.db");
        let conn = logged(&source);
        let wal = dir.path().join("source.db-wal");
        conn.execute("INSERT INTO t VALUES ('a')", []).unwrap();
        let before = read_commits(&wal, None).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let empty = read_commits(&wal, before.position).unwrap();
        assert!(empty.commits.is_empty() && empty.restarted && empty.position.is_none());
        conn.execute("INSERT INTO t VALUES ('b')", []).unwrap();
        conn.execute("INSERT INTO t VALUES ('c')", []).unwrap();
        let after = read_commits(&wal, before.position).unwrap();
        assert!(after.restarted, "new salts after the checkpoint");
        assert_eq!(after.commits.len(), 2);
        assert_ne!(after.position.unwrap().salt, before.position.unwrap().salt);

        // One flipped byte in the last frame's page: the log ends before that commit.
        let copy = dir.path().join("copy-wal");
        let mut bytes = std::fs::read(&wal).unwrap();
        let last = bytes.len() - 100;
        bytes[last] ^= 0xff;
        std::fs::write(&copy, &bytes).unwrap();
        let damaged = read_commits(&copy, None).unwrap();
        assert_eq!(damaged.commits.len(), 1, "only the intact commit");
    }
}
