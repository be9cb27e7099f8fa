//! `silo-billing`: plans, quotas, usage metering and invoices.
//!
//! Nothing is billed yet: the foundation only records a plan name per tenant (in the control
//! plane of `silo-tenancy`). Plans, quotas and metering arrive with their own issue; this crate
//! keeps its place in the dependency chain `apps/web → billing → tenancy → storage`.

pub use silo_tenancy as tenancy;
