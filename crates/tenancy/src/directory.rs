//! The directory: in-memory answers to the questions every request asks the control plane.
//! A [`Memo`] holds the answers to one question; tenancy keeps "which tenant is this slug"
//! ([`crate::Tenancy::resolve`]), `silo-accounts` keeps the identity half (whose token or
//! session is this, what role has this user there, is this user an operator).
//!
//! Each answer would otherwise cost a control-plane query (~100 µs through sqlx's worker
//! thread, see `cache/handle.rs`). Every write this process makes to what a memo answers
//! clears that memo, so within the process answers are never stale — and no other process
//! writes the control plane while a server runs: `silo serve` owns the data directory and the
//! CLI runs its commands inside it, through the operator socket (see ARCHITECTURE.md, "One
//! owner per tenant file"). Answers that change with time alone (a token's or a session's
//! expiry) are checked on every use by their owners.
//!
//! So the re-read is a safety net, not the way changes arrive: an answer is used for at most
//! [`TTL`], and once it is [`REFRESH_AFTER`] old the next use still takes it but also re-reads
//! it in the background, so an answer in steady use never waits for the control plane. With
//! 10,000 tenants in use the re-reads of a 4 s refresh were ~7,500 control-plane queries a
//! second — as many as the requests they served — and the requests whose answer had expired
//! queued behind them (p99 67–168 ms, `silo-bench http --wrk --tenants 10000`); at one
//! re-read a minute they are ~500 a second. Background re-reads also take a permit (one per
//! memo at a time, skipped when taken): they never occupy the control plane's read
//! connections that a request waiting for an answer needs.
//!
//! **Servers of a cluster** write the same control plane, so a memo must also hear of the
//! others' writes: every memo of a process shares one [`Link`]. A clear here is announced to
//! the other servers (PostgreSQL's `NOTIFY silo_directory`, [`crate::Tenancy::share_directory`]);
//! one heard from another server, or a reconnection of the listener (it may have missed
//! some), moves the link's generation, and every answer read under an older one is read again.
//! A session signed out on one server is refused on the others within milliseconds.
//!
//! A lookup that read the control plane *before* a revocation must not put its stale answer
//! back *after* the clear. Every lookup takes a ticket (the memo's generation) before
//! it queries, and [`Memo`]'s put inserts only if no clear happened since — checked again
//! after the insert, since a clear can fall between the check and the insert.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use tokio::sync::Semaphore;

/// How long an answer may be reused.
pub const TTL: Duration = Duration::from_secs(70);
/// After this a used answer is re-read in the background. Late in the TTL, so an answer in
/// steady use costs one re-read a minute and the re-read still has ten seconds to land.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 100_000;

/// What ties a process's memos to the other servers of its cluster (see the module).
#[derive(Debug, Default)]
pub struct Link {
    /// Moved when another server announced a change (or may have).
    generation: AtomicU64,
    /// Set by every clear here; the announcer tells the other servers.
    changed_here: tokio::sync::Notify,
}

impl Link {
    /// Another server changed what memos answer (or may have): every answer is read again.
    pub fn changed_elsewhere(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits for a change made here (to announce it).
    pub async fn next_change_here(&self) {
        self.changed_here.notified().await;
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// Remembered answers to one question (`K` → `V`), each for at most [`TTL`]. Cloning is cheap
/// and shares the answers.
pub struct Memo<K, V> {
    answers: Cache<K, Answer<V>>,
    /// Bumped by every [`Memo::clear`].
    generation: Arc<AtomicU64>,
    /// The process's link to the other servers.
    link: Arc<Link>,
    /// The one background re-read this memo may run at a time.
    refresh_permit: Arc<Semaphore>,
    refresh_after: Duration,
}

impl<K, V> Clone for Memo<K, V> {
    fn clone(&self) -> Self {
        Self {
            answers: self.answers.clone(),
            generation: self.generation.clone(),
            link: self.link.clone(),
            refresh_permit: self.refresh_permit.clone(),
            refresh_after: self.refresh_after,
        }
    }
}

/// One remembered answer.
#[derive(Clone)]
struct Answer<V> {
    value: V,
    read_at: Instant,
    /// The link's generation it was read under.
    link_generation: u64,
    /// Set while a background re-read of this answer runs (one at a time).
    refreshing: Arc<AtomicBool>,
}

/// The memo's generation when a lookup started (see [`Memo::put`]).
#[derive(Clone, Copy, Debug)]
#[must_use = "a ticket is for putting the answer in the memo"]
struct Ticket(u64, u64);

impl<K, V> Default for Memo<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::linked(Arc::default())
    }
}

impl<K, V> Memo<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty memo of its own (no other server).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty memo of the process whose memos share `link`.
    pub fn linked(link: Arc<Link>) -> Self {
        Self::with_timing(REFRESH_AFTER, TTL, link)
    }

    /// An empty memo whose answers are re-read after `refresh_after` and dropped after `ttl`.
    pub fn with_timing(refresh_after: Duration, ttl: Duration, link: Arc<Link>) -> Self {
        Self {
            answers: Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build(),
            generation: Arc::default(),
            link,
            refresh_permit: Arc::new(Semaphore::new(1)),
            refresh_after,
        }
    }

    /// The answer for `key`: remembered, or read by `read` (and remembered). A remembered
    /// answer older than [`REFRESH_AFTER`] is returned and re-read in the background; errors
    /// are never remembered.
    pub async fn get_or_read<E, F, Fut>(&self, key: K, read: F) -> Result<V, E>
    where
        E: std::fmt::Display,
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(answer) = self.answers.get(&key).filter(|a| a.link_generation == self.link.generation()) {
            if answer.read_at.elapsed() >= self.refresh_after
                && let Ok(permit) = self.refresh_permit.clone().try_acquire_owned()
                && !answer.refreshing.swap(true, Ordering::SeqCst)
            {
                let memo = self.clone();
                let refreshing = answer.refreshing.clone();
                tokio::spawn(async move {
                    let ticket = memo.ticket();
                    let result = read(key.clone()).await;
                    drop(permit);
                    match result {
                        Ok(value) => memo.put(ticket, key, value),
                        Err(e) => {
                            // The answer expires at its TTL as before; the next use tries again.
                            refreshing.store(false, Ordering::SeqCst);
                            tracing::debug!(error = %e, "re-reading a directory answer failed");
                        }
                    }
                });
            }
            return Ok(answer.value);
        }
        let ticket = self.ticket();
        let value = read(key.clone()).await?;
        self.put(ticket, key, value.clone());
        Ok(value)
    }

    /// Taken before a lookup reads the control plane.
    fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst), self.link.generation())
    }

    /// Whether a clear (here, or heard from another server) happened since `ticket`.
    fn cleared_since(&self, ticket: Ticket) -> bool {
        self.generation.load(Ordering::SeqCst) != ticket.0 || self.link.generation() != ticket.1
    }

    /// Remembers an answer read under `ticket`, unless the memo was cleared since.
    fn put(&self, ticket: Ticket, key: K, value: V) {
        if self.cleared_since(ticket) {
            return;
        }
        let answer =
            Answer { value, read_at: Instant::now(), link_generation: ticket.1, refreshing: Arc::default() };
        self.answers.insert(key.clone(), answer);
        // A clear between the check and the insert may have run its `invalidate_all` before
        // the insert: take the answer back out.
        if self.cleared_since(ticket) {
            self.answers.invalidate(&key);
        }
    }

    /// Forgets everything (after any write that may change an answer; call it after the write
    /// committed).
    pub fn clear(&self) {
        // The generation first: a lookup that has not inserted yet will not.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.answers.invalidate_all();
        self.link.changed_here.notify_one();
    }
}

/// The channel servers of a cluster announce directory changes on.
const CHANNEL: &str = "silo_directory";

impl crate::Tenancy {
    /// The link every memo of this process shares (the accounts' too).
    pub fn directory_link(&self) -> Arc<Link> {
        self.inner.directory_link.clone()
    }

    /// On PostgreSQL: announces this server's directory changes to the other servers (as
    /// `node`) and hears theirs, until `stop` (see the module). Returns at once on
    /// `control.db`.
    pub async fn share_directory(&self, node: &str, stop: impl Future<Output = ()>) {
        if self.control().is_embedded() {
            return;
        }
        let link = self.directory_link();
        let control = self.control();
        let announce = async {
            loop {
                link.next_change_here().await;
                // Until it is told: a revocation the others never hear of would live on there
                // for the memo's whole life.
                while let Err(e) = control.reader().notify(CHANNEL, node).await {
                    tracing::warn!(error = %e, "announcing a directory change to the other servers failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let listen = control.reader().listen(
            CHANNEL,
            |from| {
                if from != Some(node) {
                    link.changed_elsewhere();
                }
            },
            std::future::pending(),
        );
        tokio::select! {
            _ = async { tokio::join!(announce, listen) } => {}
            () = stop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another server's change (heard through the link) makes every answer read again, and
    /// an answer read before it is not kept.
    #[tokio::test]
    async fn a_change_elsewhere_makes_answers_read_again() {
        let link = Arc::new(Link::default());
        let memo: Memo<&'static str, u32> = Memo::linked(link.clone());
        let reads = Arc::new(AtomicU64::new(0));
        let read = |reads: Arc<AtomicU64>| {
            move |_| async move { Ok::<_, String>(reads.fetch_add(1, Ordering::SeqCst) as u32 + 1) }
        };
        assert_eq!(memo.get_or_read("s", read(reads.clone())).await, Ok(1));
        assert_eq!(memo.get_or_read("s", read(reads.clone())).await, Ok(1), "remembered");
        let stale = memo.ticket();
        link.changed_elsewhere();
        memo.put(stale, "t", 9);
        assert!(memo.answers.get("t").is_none(), "read before the change: dropped");
        assert_eq!(memo.get_or_read("s", read(reads.clone())).await, Ok(2), "read again");
        assert_eq!(memo.get_or_read("s", read(reads)).await, Ok(2));
    }

    /// A clear here is announced (once for a burst).
    #[tokio::test]
    async fn a_clear_here_is_announced() {
        let link = Arc::new(Link::default());
        let memo: Memo<&'static str, u32> = Memo::linked(link.clone());
        memo.clear();
        memo.clear();
        tokio::time::timeout(Duration::from_secs(1), link.next_change_here()).await.expect("announced");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), link.next_change_here()).await.is_err(),
            "one announcement for the burst"
        );
    }

    #[test]
    fn an_answer_read_before_a_clear_is_not_kept() {
        let memo: Memo<String, bool> = Memo::new();
        let stale = memo.ticket();
        memo.clear();
        memo.put(stale, "u1".to_owned(), true);
        assert!(memo.answers.get("u1").is_none(), "read before the clear: dropped");
        let fresh = memo.ticket();
        memo.put(fresh, "u1".to_owned(), false);
        assert_eq!(memo.answers.get("u1").map(|a| a.value), Some(false));
    }

    /// An answer in use is re-read in the background once it is `refresh_after` old: the use
    /// that notices still gets the old answer, a later one the new, well before the TTL.
    #[tokio::test]
    async fn answers_in_use_are_refreshed_before_they_expire() {
        let (refresh_after, ttl) = (Duration::from_millis(300), Duration::from_secs(3));
        let memo: Memo<&'static str, u32> = Memo::with_timing(refresh_after, ttl, Arc::default());
        let reads = Arc::new(AtomicU64::new(0));
        let read = |reads: Arc<AtomicU64>| {
            move |_| async move { Ok::<_, String>(reads.fetch_add(1, Ordering::SeqCst) as u32 + 1) }
        };
        let started = Instant::now();
        assert_eq!(memo.get_or_read("k", read(reads.clone())).await, Ok(1));
        assert_eq!(memo.get_or_read("k", read(reads.clone())).await, Ok(1), "remembered");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(refresh_after + Duration::from_millis(50)).await;
        assert_eq!(memo.get_or_read("k", read(reads.clone())).await, Ok(1), "old answer, re-read started");
        loop {
            if memo.get_or_read("k", read(reads.clone())).await == Ok(2) {
                break;
            }
            assert!(started.elapsed() < ttl, "the re-read did not land before the TTL");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one re-read, not one per use");
    }

    /// Background re-reads take the memo's one permit: while one runs, another stale answer
    /// is served as it is and not re-read (a later use tries again), so re-reads never fill
    /// the control plane's read connections.
    #[tokio::test]
    async fn one_background_re_read_at_a_time() {
        let memo: Memo<u32, u32> = Memo::with_timing(Duration::ZERO, Duration::from_secs(60), Arc::default());
        let (release, wait) = tokio::sync::watch::channel(false);
        let reads = Arc::new(AtomicU64::new(0));
        let read = |value: u32, reads: Arc<AtomicU64>, mut wait: tokio::sync::watch::Receiver<bool>| {
            move |_| async move {
                reads.fetch_add(1, Ordering::SeqCst);
                let _ = wait.wait_for(|open| *open).await;
                Ok::<_, String>(value)
            }
        };
        // First reads (not background): both answers remembered.
        release.send(true).unwrap();
        assert_eq!(memo.get_or_read(1, read(10, reads.clone(), wait.clone())).await, Ok(10));
        assert_eq!(memo.get_or_read(2, read(20, reads.clone(), wait.clone())).await, Ok(20));
        release.send(false).unwrap();
        // Both are stale at once (refresh_after zero): the first use starts a re-read that
        // blocks; the second answer's use finds the permit taken and starts none.
        assert_eq!(memo.get_or_read(1, read(11, reads.clone(), wait.clone())).await, Ok(10));
        assert_eq!(memo.get_or_read(2, read(21, reads.clone(), wait.clone())).await, Ok(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "one background re-read running");
        release.send(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while memo.get_or_read(1, read(12, reads.clone(), wait.clone())).await != Ok(11) {
            assert!(Instant::now() < deadline, "the running re-read landed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // With the permit back, the second answer's next use re-reads it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while memo.get_or_read(2, read(22, reads.clone(), wait.clone())).await != Ok(22) {
            assert!(Instant::now() < deadline, "the skipped answer is re-read later");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
