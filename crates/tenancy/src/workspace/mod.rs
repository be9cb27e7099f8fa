//! Repositories of the tenant workspace: every SQL statement that touches a tenant file lives
//! here, behind [`crate::TenantDb`], so HTTP handlers and the CLI never see the driver.
//!
//! Lists are paged by keyset (`before` = the last id of the previous page), so a page costs
//! the same however deep it is.

pub mod activity;
pub mod comments;
pub mod members;
pub mod projects;
pub mod tasks;

use crate::{Error, Result};

/// Largest page any list returns.
pub const MAX_PAGE: i64 = 100;

/// Clamps a requested page size to `1..=MAX_PAGE`.
pub fn page_size(requested: Option<i64>, default: i64) -> i64 {
    requested.unwrap_or(default).clamp(1, MAX_PAGE)
}

/// Trims `value` and checks it has between `min` and `max` characters.
pub(crate) fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars < min {
        return Err(Error::InvalidInput(format!("{field} must not be empty")));
    }
    if chars > max {
        return Err(Error::InvalidInput(format!("{field} is at most {max} characters")));
    }
    Ok(value.to_owned())
}
