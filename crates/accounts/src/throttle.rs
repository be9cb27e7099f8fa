//! Throttling of guesses (passwords, tokens) and of actions that send mail, in memory (one
//! server process per data directory, see [`silo_tenancy::DataDirLock`]).
//!
//! Three counts within a window, each checked and counted in one step under a lock *before*
//! the costly or revealing work (a password hash, an email), so a burst of concurrent attempts
//! cannot all slip in before the first failure is recorded:
//! - **per client** (an address): `per_client` failures, on any accounts, and that client is
//!   refused — one source cannot spray guesses over many accounts;
//! - **per account and client**: `per_account` failures against one account, and *that client*
//!   is refused for that account — the guesser stops, the owner elsewhere does not;
//! - **per account**, from everywhere: once it has had `per_account` failures, what happens
//!   depends on the [`AccountGuard`]:
//!   - [`AccountGuard::Delay`] (password checks): further attempts from clients that are not a
//!     *known device* of the account wait a delay that doubles with each failure (1 s, 2 s, 4 s
//!     … up to the cap), so many addresses guessing together get at most one guess per delay,
//!     while the owner is never locked out: from a browser they signed in with before (a known
//!     device, see the web layer's device cookie) they are not subject to the delay at all, and
//!     from anywhere else they wait at most the cap. This is how large identity providers keep
//!     an attacker from locking someone out with wrong passwords.
//!   - [`AccountGuard::Limit`] (emails to an address: sign-ups, resets): no more for the
//!     window, from anyone.
//!
//! A known device (a browser that signed in to the account before) is held only to its own
//! count on that account, at the per-client limit: neither a guesser behind the same address
//! nor the account's delay keeps the owner's browser out, and a stolen browser still gets only
//! a bounded number of guesses.
//!
//! A correct password clears the account's counts and refunds the client's attempt (many people
//! behind one office address do not lock each other out).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What an account that had `per_account` failures (from anywhere) does with more attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountGuard {
    /// Attempts from unknown devices wait a delay doubling from one second up to this cap.
    Delay(Duration),
    /// No more attempts within the window.
    Limit,
}

/// Limits per key within a window.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures of one client against one account (and, for the account from everywhere, when
    /// its guard starts).
    pub per_account: u32,
    /// Failures of one client, on any accounts.
    pub per_client: u32,
    /// How long failures count.
    pub window: Duration,
    /// What an account does after `per_account` failures from everywhere.
    pub guard: AccountGuard,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
            guard: AccountGuard::Delay(Duration::from_secs(60)),
        }
    }
}

/// A count within the window, and when it was last added to.
#[derive(Clone, Copy, Debug)]
struct Count {
    n: u32,
    since: Instant,
    last: Instant,
}

/// Entries at which [`Throttle::attempt`] drops expired counts first.
const SWEEP_AT: usize = 50_000;

/// The in-memory throttle (see the module docs).
#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    counts: Mutex<HashMap<String, Count>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::default())
    }
}

impl Throttle {
    /// A throttle with this policy.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, counts: Mutex::default() }
    }

    /// Counts an attempt on `account` by `client` (`known_device`: the client proved it signed
    /// in to this account before), or refuses it with `Err(retry_after)` (see the module
    /// docs). Check and count are one step under the lock.
    pub fn attempt(&self, account: &str, client: &str, known_device: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock();
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, c| now.duration_since(c.since) < self.policy.window);
        }
        self.refusal(&counts, account, client, known_device, now).map_or(Ok(()), Err)?;
        for key in keys(account, client) {
            let count = counts.entry(key).or_insert(Count { n: 0, since: now, last: now });
            if now.duration_since(count.since) >= self.policy.window {
                *count = Count { n: 0, since: now, last: now };
            }
            count.n += 1;
            count.last = now;
        }
        Ok(())
    }

    /// `Err(retry_after)` when an attempt would be refused, without counting one: for checks
    /// that cost nothing (a token lookup), paired with [`Throttle::failed`].
    pub fn check(&self, account: &str, client: &str) -> Result<(), Duration> {
        let counts = self.counts.lock();
        self.refusal(&counts, account, client, false, Instant::now()).map_or(Ok(()), Err)
    }

    /// How long an attempt must wait, if it must.
    fn refusal(
        &self,
        counts: &HashMap<String, Count>,
        account: &str,
        client: &str,
        known_device: bool,
        now: Instant,
    ) -> Option<Duration> {
        let window = self.policy.window;
        let live = |key: &str| {
            counts
                .get(key)
                .copied()
                .filter(|c| now.duration_since(c.since) < window)
                .map(|c| (c, window - now.duration_since(c.since)))
        };
        let [account_key, client_key, pair_key] = keys(account, client);
        if known_device && matches!(self.policy.guard, AccountGuard::Delay(_)) {
            // The account's own browser: not held to its address's count (others behind the
            // same address cannot lock it out) nor to the account's delay, only to its own
            // count on this account — as many as one address gets for every account.
            return live(&pair_key).filter(|(c, _)| c.n >= self.policy.per_client).map(|(_, left)| left);
        }
        if let Some((c, left)) = live(&client_key)
            && c.n >= self.policy.per_client
        {
            return Some(left);
        }
        if let Some((c, left)) = live(&pair_key)
            && c.n >= self.policy.per_account
        {
            return Some(left);
        }
        let (c, left) = live(&account_key)?;
        if c.n < self.policy.per_account {
            return None;
        }
        match self.policy.guard {
            AccountGuard::Limit => Some(left),
            AccountGuard::Delay(_) if known_device => None,
            AccountGuard::Delay(cap) => {
                let doublings = (c.n - self.policy.per_account).min(20);
                let delay = Duration::from_secs(1u64 << doublings).min(cap);
                let ready = c.last + delay;
                (now < ready).then(|| ready - now)
            }
        }
    }

    /// Counts a failure (after [`Throttle::check`]).
    pub fn failed(&self, account: &str, client: &str) {
        let now = Instant::now();
        let mut counts = self.counts.lock();
        for key in keys(account, client) {
            let count = counts.entry(key).or_insert(Count { n: 0, since: now, last: now });
            if now.duration_since(count.since) >= self.policy.window {
                *count = Count { n: 0, since: now, last: now };
            }
            count.n += 1;
            count.last = now;
        }
    }

    /// A correct password: the account's counts (from everywhere, and from this client) are
    /// cleared and the client's attempt refunded.
    pub fn succeeded(&self, account: &str, client: &str) {
        let mut counts = self.counts.lock();
        let [account_key, client_key, pair_key] = keys(account, client);
        counts.remove(&account_key);
        counts.remove(&pair_key);
        if let Some(count) = counts.get_mut(&client_key) {
            count.n = count.n.saturating_sub(1);
        }
    }

    /// Gives an attempt back (it was refused for its input before any costly work).
    pub fn refund(&self, account: &str, client: &str) {
        let mut counts = self.counts.lock();
        for key in keys(account, client) {
            if let Some(count) = counts.get_mut(&key) {
                count.n = count.n.saturating_sub(1);
            }
        }
    }

    /// Forgets counts whose window has passed (keeps the map from growing without bound).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.counts.lock().retain(|_, c| now.duration_since(c.since) < self.policy.window);
    }
}

/// The keys of an attempt: the account (from everywhere), the client, the pair.
fn keys(account: &str, client: &str) -> [String; 3] {
    let account = account.trim().to_lowercase();
    [format!("account:{account}"), format!("client:{client}"), format!("pair:{account}\n{client}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(guard: AccountGuard) -> ThrottlePolicy {
        ThrottlePolicy { per_account: 3, per_client: 5, window: Duration::from_secs(60), guard }
    }

    #[test]
    fn a_guesser_is_refused_for_the_account_and_the_owner_elsewhere_is_not_locked_out() {
        let throttle = Throttle::new(policy(AccountGuard::Delay(Duration::from_secs(60))));
        for _ in 0..3 {
            assert!(throttle.attempt("Ada@Example.com", "10.0.0.1", false).is_ok());
        }
        let retry = throttle.attempt("ada@example.com", "10.0.0.1", false).unwrap_err();
        assert!(
            retry <= Duration::from_secs(60) && retry > Duration::from_secs(50),
            "the guesser waits the window"
        );
        // Another account from the guesser's address still works (up to the client's limit).
        assert!(throttle.attempt("bob@example.com", "10.0.0.1", false).is_ok());
        assert!(throttle.attempt("bob@example.com", "10.0.0.1", false).is_ok());
        assert!(throttle.attempt("carol@example.com", "10.0.0.1", false).is_err(), "the client used its 5");
        // The owner on a device they signed in with before: at once, from elsewhere and from
        // the guesser's own address (one office behind one NAT), whatever that address used.
        assert!(throttle.attempt("ada@example.com", "10.0.0.9", true).is_ok());
        throttle.succeeded("ada@example.com", "10.0.0.9");
        assert!(throttle.attempt("ada@example.com", "10.0.0.1", false).is_err(), "still not the guesser");
        assert!(throttle.attempt("ada@example.com", "10.0.0.1", true).is_ok(), "the owner's browser there");
        // A known device gets as many wrong passwords on its account as an address gets in all
        // (five here: the guesser's three from that address count too).
        assert!(throttle.attempt("ada@example.com", "10.0.0.1", true).is_ok());
        assert!(throttle.attempt("ada@example.com", "10.0.0.1", true).is_err(), "five in all");
    }

    #[test]
    fn unknown_devices_wait_a_doubling_delay_on_an_account_under_attack() {
        let throttle = Throttle::new(policy(AccountGuard::Delay(Duration::from_secs(4))));
        for i in 0..3 {
            assert!(throttle.attempt("ada@example.com", &format!("10.0.0.{i}"), false).is_ok());
        }
        // Three failures from three addresses: a fourth address waits a second…
        let wait = throttle.attempt("ada@example.com", "10.0.1.1", false).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        // …a known device does not.
        assert!(throttle.attempt("ada@example.com", "10.0.1.2", true).is_ok());
        // The delay doubles with each failure, up to the cap.
        let wait = throttle.attempt("ada@example.com", "10.0.1.3", false).unwrap_err();
        assert!(wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2), "{wait:?}");
        for _ in 0..5 {
            throttle.attempt("ada@example.com", "10.0.2.1", true).unwrap_or_default();
        }
        let wait = throttle.attempt("ada@example.com", "10.0.1.4", false).unwrap_err();
        assert!(wait <= Duration::from_secs(4) && wait > Duration::from_secs(3), "capped: {wait:?}");
    }

    #[test]
    fn a_limit_guard_refuses_everyone_for_the_window() {
        let throttle = Throttle::new(policy(AccountGuard::Limit));
        for i in 0..3 {
            assert!(throttle.attempt("ada@example.com", &format!("10.0.0.{i}"), false).is_ok());
        }
        assert!(
            throttle.attempt("ada@example.com", "10.0.0.9", true).is_err(),
            "three emails an hour, from anyone"
        );
    }

    #[test]
    fn concurrent_attempts_are_counted_before_any_is_checked() {
        let throttle = std::sync::Arc::new(Throttle::new(ThrottlePolicy {
            guard: AccountGuard::Delay(Duration::from_secs(60)),
            ..ThrottlePolicy::default()
        }));
        // 200 guesses at once from 200 addresses: the per-account count admits 5, then the
        // others arrive within the first second's delay.
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    throttle
                        .attempt("ada@example.com", &format!("10.0.{}.{}", i / 250, i % 250), false)
                        .is_ok()
                })
            })
            .collect();
        let admitted = threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(admitted, ThrottlePolicy::default().per_account as usize);
        // 200 at once from one address on one account: 5.
        let throttle = std::sync::Arc::new(Throttle::default());
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || throttle.attempt("bob@example.com", "10.9.9.9", false).is_ok())
            })
            .collect();
        assert_eq!(threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count(), 5);
    }

    #[test]
    fn the_window_expires_and_the_map_is_swept() {
        let throttle = Throttle::new(ThrottlePolicy {
            per_account: 1,
            per_client: 10,
            window: Duration::from_millis(30),
            guard: AccountGuard::Limit,
        });
        assert!(throttle.attempt("ada@example.com", "c", false).is_ok());
        assert!(throttle.attempt("ada@example.com", "c", false).is_err());
        std::thread::sleep(Duration::from_millis(40));
        throttle.sweep();
        assert!(throttle.counts.lock().is_empty(), "expired counts are swept");
        assert!(throttle.attempt("ada@example.com", "c", false).is_ok());
    }
}
