//! Repositories of the tenant workspace: every SQL statement that touches a tenant file lives
//! here, behind [`crate::TenantDb`], so HTTP handlers and the CLI never see the driver.

pub mod members;
pub mod tasks;
