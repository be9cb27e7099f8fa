//! `silo-core`: the types and helpers every Silo crate shares — typed ids, time and the
//! clock, the kinds of error, secrets, the settings loader, hex and random tokens, byte sizes for people, and the
//! audit log every layer writes (its one table). It knows nothing of tenants' files, people
//! or money.
//!
//! # Layout
//! - [`ids`]: [`TenantId`], [`TenantSlug`], [`TenantRef`] and why a slug is refused.
//! - [`time`]: [`Timestamp`] (the stored format, checked), calendar arithmetic, the [`Clock`]
//!   ([`SystemClock`], and [`TestClock`] that tests move by hand).
//! - [`error`]: [`ErrorKind`], the one classification every layer's error maps to.
//! - [`secret`]: [`Secret`] (redacted in logs) and [`secret::constant_time_eq`].
//! - [`tokens`]: hex, random tokens and the digest stored for them.
//! - [`db`]: the control plane's database on SQLite or PostgreSQL, statements written once.
//! - [`audit`]: the audit log — appended inside each change's transaction, read by the console.
//! - [`erasure`]: [`erasure::ErasureStep`], how each crate says what erasing a person does to its tables.
//! - [`settings`]: the one loader (defaults, `silo.toml`, `SILO_…` variables).
//! - [`units`]: quantities as people read them (byte sizes); [`text`]: what is blank around a value.

pub mod audit;
pub mod db;
pub mod erasure;
pub mod error;
pub mod ids;
pub mod secret;
pub mod settings;
pub mod text;
pub mod time;
pub mod tokens;
pub mod units;

pub use error::ErrorKind;
pub use ids::{SlugError, TenantId, TenantRef, TenantSlug};
pub use secret::Secret;
pub use time::{Clock, ProcessClock, SharedClock, SystemClock, TestClock, Timestamp};
