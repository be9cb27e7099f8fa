//! Known devices: a browser that signed in to an account carries a signed cookie saying so,
//! and the password throttle ([`silo_accounts::throttle`]) does not make it wait when others
//! guess that account's password — so wrong passwords from elsewhere never lock the owner out
//! of their usual browser.
//!
//! The cookie holds, for up to [`REMEMBERED`] accounts, a keyed hash of the account's address
//! (HMAC under a key derived from the master key): it names no one, cannot be forged without
//! the key, and proves nothing but "signed in here before". Like the session cookie it is
//! `HttpOnly`, `SameSite=Lax`, host-only, and over HTTPS `Secure` with the `__Host-` prefix.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::{HttpRequest, HttpResponse};

use super::request::{is_secure, state};

const COOKIE: &str = "silo_device";
const SECURE_COOKIE: &str = "__Host-silo_device";
/// What the cookie's key is derived for.
const PURPOSE: &str = "silo known devices v1";
/// Accounts one browser is remembered for.
const REMEMBERED: usize = 5;

fn cookie_name(req: &HttpRequest) -> &'static str {
    if is_secure(req) { SECURE_COOKIE } else { COOKIE }
}

/// The keyed hash of an address, as the cookie holds it.
async fn mark(req: &HttpRequest, email: &str) -> Option<String> {
    let key = state(req).tenancy().master_key().await.ok()?.derive(PURPOSE);
    Some(key.mac_hex(format!("device:{}", email.trim().to_lowercase()).as_bytes()))
}

fn marks(req: &HttpRequest) -> Vec<String> {
    req.cookie(cookie_name(req))
        .map(|c| c.value().split('.').filter(|m| !m.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether this browser signed in to the account with this address before.
pub async fn is_known(req: &HttpRequest, email: &str) -> bool {
    match mark(req, email).await {
        Some(mark) => marks(req).contains(&mark),
        None => false,
    }
}

/// Remembers this browser for the account with this address (after a correct password).
pub async fn remember(req: &HttpRequest, response: &mut HttpResponse, email: &str) {
    let Some(mark) = mark(req, email).await else { return };
    let mut kept = marks(req);
    kept.retain(|m| *m != mark);
    kept.insert(0, mark);
    kept.truncate(REMEMBERED);
    let cookie = Cookie::build(cookie_name(req), kept.join("."))
        .path("/")
        .http_only(true)
        .secure(is_secure(req))
        .same_site(SameSite::Lax)
        .max_age(time::Duration::days(365))
        .finish();
    if let Err(e) = response.add_cookie(&cookie) {
        tracing::warn!(error = %e, "could not set the known-device cookie");
    }
}
