//! `silo-billing`: plans, quotas, usage metering and invoices.
//!
//! A documented placeholder: nothing is billed yet. The control plane records a plan name per
//! tenant (`silo-tenancy`); plans, quotas, metering, invoices and dunning arrive with their own
//! issue and will live here, above the accounts (a plan's seats count memberships, invoices go
//! to a tenant's owners) and below the web layer, which renders them.
//!
//! # Layout
//! - [`accounts`]: the layer below, re-exported so the web layer reaches people and the fleet
//!   through billing's view of them once billing has rules to add.

pub use silo_accounts as accounts;
