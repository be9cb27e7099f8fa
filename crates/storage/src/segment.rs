//! A continuous-backup segment: transactions read from a database's log ([`crate::wal`]),
//! each with the time it committed, as one object in the store (compressed and sealed like a
//! snapshot, with [`crate::backup::pack`]). Segments numbered after a snapshot form its chain;
//! replaying a chain's commits up to a time onto the snapshot gives the database as it was
//! then ([`crate::wal::apply_commits`]).
//!
//! Encoding (little-endian): `SILOSEG1`, the number of commits, then per commit its time
//! (milliseconds since the Unix epoch), the database's size in pages after it, the frame that
//! committed it, the number of pages, and each page as its number, its length and its bytes.

use crate::wal::Commit;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"SILOSEG1";

/// A commit and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedCommit {
    /// Commit time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What it wrote.
    pub commit: Commit,
}

/// Encodes commits as a segment's plain bytes.
pub fn encode(commits: &[TimedCommit]) -> Vec<u8> {
    let size: usize =
        commits.iter().map(|c| 20 + c.commit.pages.iter().map(|(_, p)| 8 + p.len()).sum::<usize>()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(commits.len() as u32).to_le_bytes());
    for timed in commits {
        out.extend_from_slice(&timed.at_ms.to_le_bytes());
        out.extend_from_slice(&timed.commit.db_pages.to_le_bytes());
        out.extend_from_slice(&timed.commit.end_frame.to_le_bytes());
        out.extend_from_slice(&(timed.commit.pages.len() as u32).to_le_bytes());
        for (number, page) in &timed.commit.pages {
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&(page.len() as u32).to_le_bytes());
            out.extend_from_slice(page);
        }
    }
    out
}

/// Decodes a segment's plain bytes; anything short or malformed is [`Error::Corrupt`] naming
/// `name` (the object).
pub fn decode(bytes: &[u8], name: &str) -> Result<Vec<TimedCommit>> {
    let corrupt = |detail: &str| Error::Corrupt { path: name.into(), detail: detail.to_owned() };
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len()).ok_or_else(|| corrupt("too short for a segment"))? != MAGIC {
        return Err(corrupt("not a segment (bad magic)"));
    }
    let count = reader.u32().ok_or_else(|| corrupt("truncated header"))?;
    let mut commits = Vec::new();
    for _ in 0..count {
        let truncated = || corrupt("truncated commit");
        let at_ms = i64::from_le_bytes(reader.take(8).ok_or_else(truncated)?.try_into().expect("8 bytes"));
        let db_pages = reader.u32().ok_or_else(truncated)?;
        let end_frame = reader.u32().ok_or_else(truncated)?;
        let pages = reader.u32().ok_or_else(truncated)?;
        let mut commit = Commit { pages: Vec::new(), db_pages, end_frame };
        for _ in 0..pages {
            let number = reader.u32().ok_or_else(truncated)?;
            let len = reader.u32().ok_or_else(truncated)? as usize;
            if !(512..=65536).contains(&len) || !len.is_power_of_two() || number == 0 {
                return Err(corrupt("a page with an impossible number or size"));
            }
            commit.pages.push((number, reader.take(len).ok_or_else(truncated)?.to_vec()));
        }
        commits.push(TimedCommit { at_ms, commit });
    }
    if reader.at != bytes.len() {
        return Err(corrupt("bytes after the last commit"));
    }
    Ok(commits)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(at_ms: i64, pages: &[(u32, u8)], db_pages: u32) -> TimedCommit {
        let pages = pages.iter().map(|&(n, fill)| (n, vec![fill; 4096])).collect();
        TimedCommit { at_ms, commit: Commit { pages, db_pages, end_frame: db_pages } }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let commits = vec![commit(1_000, &[(1, 1), (5, 2)], 5), commit(2_500, &[(2, 3)], 4)];
        let bytes = encode(&commits);
        assert_eq!(decode(&bytes, "seg").unwrap(), commits);
        assert_eq!(decode(&encode(&[]), "seg").unwrap(), []);
        for cut in [0, 7, 12, bytes.len() - 1] {
            let error = decode(&bytes[..cut], "tenants/x/seg").unwrap_err();
            assert!(error.to_string().contains("tenants/x/seg"), "{error}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, "seg").is_err());
        let mut bad_size = bytes;
        // The first page's length field: magic 8 + count 4 + time 8 + size 4 + frame 4 + pages 4 + number 4.
        bad_size[36..40].copy_from_slice(&3u32.to_le_bytes());
        assert!(decode(&bad_size, "seg").is_err());
    }
}
