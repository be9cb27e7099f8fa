//! Export downloads: a zip is streamed from disk in chunks (a download holds one chunk in
//! memory, however large the export and however many people fetch it), and downloads at once
//! are bounded per link and per client address (`exports.downloads_per_link`,
//! `exports.downloads_per_client`): a link needs no sign-in, so without a bound anyone holding
//! one could tie up the server's bandwidth and descriptors with slow readers. A download holds
//! its place for at most 15 minutes: a reader that stalls cannot keep a link blocked for hours.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

/// How much of a file one read sends.
const CHUNK: usize = 64 * 1024;

/// How long a download holds its place: a reader that stalls (or reads a byte a minute) keeps
/// its connection, but after this it no longer keeps others from starting.
const HELD_FOR: Duration = Duration::from_secs(15 * 60);

/// The downloads in progress under each key (a link, a client): their ids and starts.
type Running = Arc<Mutex<HashMap<String, Vec<(u64, Instant)>>>>;

/// Downloads in progress, by link and by client: when each started.
pub struct Downloads {
    per_link: u32,
    per_client: u32,
    held_for: Duration,
    running: Running,
    next: Arc<AtomicU64>,
}

/// A download's place in [`Downloads`], given back when dropped (when the response's stream
/// ends, however it ends: done, or the client gone).
pub struct Slot {
    id: u64,
    keys: [String; 2],
    running: Running,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        for key in &self.keys {
            if let Some(started) = running.get_mut(key) {
                started.retain(|(id, _)| *id != self.id);
                if started.is_empty() {
                    running.remove(key);
                }
            }
        }
    }
}

impl Downloads {
    /// At most `per_link` downloads of one link and `per_client` from one client at once.
    pub fn new(per_link: u32, per_client: u32) -> Self {
        Self::holding(per_link, per_client, HELD_FOR)
    }

    fn holding(per_link: u32, per_client: u32, held_for: Duration) -> Self {
        Self {
            per_link: per_link.max(1),
            per_client: per_client.max(1),
            held_for,
            running: Arc::default(),
            next: Arc::default(),
        }
    }

    /// A place for one more download of `link` by `client`, or `None` when either has its
    /// limit running (check and count are one step under the lock). Downloads older than
    /// [`HELD_FOR`] do not count.
    pub fn admit(&self, link: &str, client: &str) -> Option<Slot> {
        let keys = [format!("link:{link}"), format!("client:{client}")];
        let now = Instant::now();
        let mut running = self.running.lock();
        let holding = |key: &str| {
            running
                .get(key)
                .map_or(0, |started| started.iter().filter(|(_, at)| now - *at < self.held_for).count())
        };
        if holding(&keys[0]) >= self.per_link as usize || holding(&keys[1]) >= self.per_client as usize {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        for key in &keys {
            running.entry(key.clone()).or_default().push((id, now));
        }
        Some(Slot { id, keys, running: self.running.clone() })
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

    #[test]
    fn a_stalled_download_stops_holding_its_place_after_a_while() {
        let downloads = Downloads::holding(1, 4, Duration::from_millis(30));
        let stalled = downloads.admit("job-1", "10.0.0.1").unwrap();
        assert!(downloads.admit("job-1", "10.0.0.2").is_none());
        std::thread::sleep(Duration::from_millis(40));
        let next = downloads.admit("job-1", "10.0.0.2");
        assert!(next.is_some(), "the stalled one no longer blocks the link");
        drop((stalled, next));
        assert!(downloads.running.lock().is_empty());
    }
}
