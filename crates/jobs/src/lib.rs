//! `silo-jobs`: the durable job queue in `control.db` (the `jobs` table, which this crate
//! owns) and the worker pools that run it. It knows no job kind: the crates above register
//! theirs (`silo_tenancy::jobs`: backups, exports, purges; `silo_accounts`: erasures and
//! subject exports; `silo_billing`: the billing run and dunning) on a [`Workers`] pool.
//!
//! # Layout
//! - [`queue`]: [`Jobs`] — enqueue (bounded per key and day, [`Bound`]), claim with a lease,
//!   heartbeat, complete, fail with retry and backoff, dead-letter, cancel, retry by hand.
//! - [`worker`]: [`Workers`] — handlers by kind, lanes with their own concurrency, the run
//!   loop with heartbeats and panics caught.
//! - `error`: [`Error`] and its [`Error::kind`].

mod error;
pub mod queue;
pub mod worker;

pub use error::{Error, Result};
pub use queue::{Bound, Enqueued, Job, JobStatus, Jobs, NewJob, backoff};
pub use worker::{Handler, JobContext, JobError, Outcome, PoolSettings, Workers};
