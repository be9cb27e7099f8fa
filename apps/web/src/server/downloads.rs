//! Export downloads: a zip is streamed from disk in chunks (a download holds one chunk in
//! memory, however large the export and however many people fetch it), and downloads at once
//! are bounded per link and per client address (`exports.downloads_per_link`,
//! `exports.downloads_per_client`): a link needs no sign-in, so without a bound anyone holding
//! one could tie up the server's bandwidth and descriptors with slow readers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use actix_web::web::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

/// How much of a file one read sends.
const CHUNK: usize = 64 * 1024;

/// Downloads in progress, by link and by client.
pub struct Downloads {
    per_link: u32,
    per_client: u32,
    running: Arc<Mutex<HashMap<String, u32>>>,
}

/// A download's place in [`Downloads`], given back when dropped (when the response's stream
/// ends, however it ends: done, or the client gone).
pub struct Slot {
    keys: [String; 2],
    running: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        for key in &self.keys {
            if let Some(n) = running.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    running.remove(key);
                }
            }
        }
    }
}

impl Downloads {
    /// At most `per_link` downloads of one link and `per_client` from one client at once.
    pub fn new(per_link: u32, per_client: u32) -> Self {
        Self { per_link: per_link.max(1), per_client: per_client.max(1), running: Arc::default() }
    }

    /// A place for one more download of `link` by `client`, or `None` when either has its
    /// limit running (check and count are one step under the lock).
    pub fn admit(&self, link: &str, client: &str) -> Option<Slot> {
        let keys = [format!("link:{link}"), format!("client:{client}")];
        let mut running = self.running.lock();
        let full = |key: &str, limit: u32| running.get(key).is_some_and(|n| *n >= limit);
        if full(&keys[0], self.per_link) || full(&keys[1], self.per_client) {
            return None;
        }
        for key in &keys {
            *running.entry(key.clone()).or_default() += 1;
        }
        Some(Slot { keys, running: self.running.clone() })
    }
}

/// The file at `path` as a stream of chunks that holds `slot` until it ends.
pub async fn stream(
    path: &Path,
    slot: Slot,
) -> std::io::Result<(u64, impl futures::Stream<Item = std::io::Result<Bytes>> + 'static)> {
    let file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let chunks = futures::stream::unfold(Some((file, slot)), |state| async move {
        let (mut file, slot) = state?;
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some((file, slot))))
            }
            // The error ends the stream (and the slot with it).
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((size, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_bounded_per_link_and_per_client_and_slots_come_back() {
        let downloads = Downloads::new(2, 3);
        let a = downloads.admit("job-1", "10.0.0.1").unwrap();
        let b = downloads.admit("job-1", "10.0.0.2").unwrap();
        assert!(downloads.admit("job-1", "10.0.0.3").is_none(), "two of one link at once");
        let c = downloads.admit("job-2", "10.0.0.1").unwrap();
        let d = downloads.admit("job-3", "10.0.0.1").unwrap();
        assert!(downloads.admit("job-4", "10.0.0.1").is_none(), "three from one client at once");
        drop(a);
        assert!(downloads.admit("job-4", "10.0.0.1").is_some(), "a finished download frees its place");
        drop((b, c, d));
        assert!(downloads.running.lock().is_empty(), "nothing is left counted");
    }
}
