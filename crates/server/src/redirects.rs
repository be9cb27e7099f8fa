//! Where a response sends the browser next: 303 redirects after forms, the `next=` of a
//! sign-in (local paths only), and flash messages carried to the next page in a cookie.

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

const FLASH_COOKIE: &str = "silo_flash";

/// Percent-encodes a query-string value.
pub fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

/// Percent-encodes a cookie's value, every byte but letters, digits and `-._~`: the server
/// reads request cookies percent-decoded, so what is read back is exactly what was written.
fn cookie_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A local path to return to after sign-in, else `/`. Accepted: one `/` followed by a
/// character that is neither `/` nor a backslash, and no control character or whitespace
/// anywhere — browsers drop tabs and newlines and read a backslash as `/`, so `/<tab>/evil.example`
/// or `/<backslash>evil` would lead to another site.
pub fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        let mut chars = n.chars();
        chars.next() == Some('/')
            && chars.next().is_none_or(|c| c != '/' && c != '\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    match next {
        Some(n) if local(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// A redirect after a form (303, so the browser follows with GET).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).finish()
}

/// Longest flash message kept (bytes of UTF-8; three times that once percent-encoded).
const FLASH_BYTES: usize = 400;

/// A redirect that shows a message on the next page.
pub fn see_other_with_flash(location: &str, kind: &str, message: &str) -> HttpResponse {
    flash_redirect(location, kind, message, None)
}

/// A refused form sent back to its page: the error shown next to `field` when the form has it
/// (else above the page), and what was typed (`typed`) put back in the form's fields.
pub fn see_other_with_form_error(
    location: &str,
    field: Option<&str>,
    message: &str,
    typed: &[(&str, &str)],
) -> HttpResponse {
    // To the error itself: on a long page (a full board, the console) the form is far down.
    let location = match field {
        Some(field) if !location.contains('#') => format!("{location}#{field}-error"),
        _ => location.to_owned(),
    };
    let mut response = flash_redirect(&location, "error", message, field);
    // What was typed waits here, under a random key the cookie carries: however long it is
    // (a form is at most 64 KiB), it comes back whole, and it never travels in a header.
    let key = silo_core::tokens::random_hex(16);
    let values: Vec<(String, String)> =
        typed.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    TYPED.insert(key.clone(), std::sync::Arc::new(values));
    let _ = response.add_cookie(&message_cookie(TYPED_COOKIE, key));
    response
}

/// A cookie for the next page only (a flash message, a typed-values key): this site's, no
/// script's, a minute long.
fn message_cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(60))
        .finish()
}

/// A refused form's fields and what was typed in them.
type Typed = std::sync::Arc<Vec<(String, String)>>;

/// What refused forms typed, by the key in their browser's cookie: a few minutes at most, and
/// at most 32 MiB in all (the oldest go first), in this process — the one that serves the
/// page they return to.
static TYPED: std::sync::LazyLock<moka::sync::Cache<String, Typed>> = std::sync::LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(32 * 1024 * 1024)
        .weigher(|key: &String, values: &Typed| {
            let bytes = key.len() + values.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>();
            u32::try_from(bytes).unwrap_or(u32::MAX)
        })
        .time_to_live(std::time::Duration::from_secs(180))
        .build()
});

/// The cookie holding what a refused form had typed.
const TYPED_COOKIE: &str = "silo_typed";

/// What a refused form had typed (see [`see_other_with_form_error`]): field name → value,
/// taken (shown once).
pub fn take_typed(req: &HttpRequest) -> Option<std::collections::HashMap<String, String>> {
    let key = req.cookie(TYPED_COOKIE)?.value().to_owned();
    let values = TYPED.remove(&key)?;
    Some(values.iter().cloned().collect())
}

/// The cookie that removes typed values once shown.
pub fn typed_removal() -> Cookie<'static> {
    let mut cookie = Cookie::build(TYPED_COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

fn flash_redirect(location: &str, kind: &str, message: &str, field: Option<&str>) -> HttpResponse {
    let mut response = see_other(location);
    // A cookie is at most 4 KiB: a message quoting a huge input would be dropped by the
    // browser, and the refusal would go unseen.
    let message = if message.len() > FLASH_BYTES {
        let end = (0..=FLASH_BYTES).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &message[..end])
    } else {
        message.to_owned()
    };
    // `kind@field|message`: a field name has no `|` or `@`.
    let kind = match field.filter(|f| !f.is_empty() && !f.contains(['|', '@'])) {
        Some(field) => format!("{kind}@{field}"),
        None => kind.to_owned(),
    };
    let _ = response.add_cookie(&message_cookie(FLASH_COOKIE, cookie_value(&format!("{kind}|{message}"))));
    response
}

/// A message carried to the next page.
#[derive(Debug, serde::Serialize)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    /// What it says.
    pub message: String,
    /// The form field it is about: the page shows it there instead of above.
    pub field: Option<String>,
}

/// The flash message of this request, if any.
pub fn take_flash(req: &HttpRequest) -> Option<Flash> {
    let raw = req.cookie(FLASH_COOKIE)?;
    let (kind, message) = raw.value().split_once('|').map(|(k, m)| (k.to_owned(), m.to_owned()))?;
    let (kind, field) = match kind.split_once('@') {
        Some((kind, field)) => (kind.to_owned(), Some(field.to_owned())),
        None => (kind, None),
    };
    let kind = if kind == "error" { "error" } else { "ok" };
    Some(Flash { kind, message, field: field.filter(|_| kind == "error") })
}

/// Marks the flash and typed-values cookies a response sets `Secure` when the request came
/// over HTTPS (their builders have no request to ask): an invitation's flash quotes its link.
pub fn secure_message_cookies(response: &mut actix_web::dev::ServiceResponse) {
    use actix_web::http::header::{HeaderValue, SET_COOKIE};
    if !crate::request::is_secure(response.request()) {
        return;
    }
    let cookies: Vec<HeaderValue> = response.headers().get_all(SET_COOKIE).cloned().collect();
    let ours = |v: &HeaderValue| {
        v.to_str().is_ok_and(|c| {
            c.starts_with(&format!("{FLASH_COOKIE}=")) || c.starts_with(&format!("{TYPED_COOKIE}="))
        })
    };
    if !cookies.iter().any(ours) {
        return;
    }
    let headers = response.headers_mut();
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let value = match cookie.to_str() {
            Ok(text) if ours(&cookie) && !text.contains("; Secure") => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
            }
            _ => cookie,
        };
        headers.append(SET_COOKIE, value);
    }
}

/// The cookie that removes a shown flash message.
pub fn flash_removal() -> Cookie<'static> {
    let mut cookie = Cookie::build(FLASH_COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/w/acme/")), "/w/acme/");
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(Some("/w/acme/tasks/1?x=a%20b")), "/w/acme/tasks/1?x=a%20b");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "evil",
            "/\\evil.example",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/w/acme\u{7f}",
            "/\u{a0}/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    #[test]
    fn typed_values_come_back() {
        let response = see_other_with_form_error(
            "/x",
            Some("due_date"),
            "bad",
            &[("title", "Ship the rocket"), ("body", "with care"), ("due_date", "2026-02-30")],
        );
        let cookie = response.cookies().find(|c| c.name() == TYPED_COOKIE).unwrap();
        let req = actix_web::test::TestRequest::default().cookie(cookie.into_owned()).to_http_request();
        let typed = take_typed(&req).unwrap();
        assert_eq!(typed.get("body").map(String::as_str), Some("with care"), "{typed:?}");
        assert_eq!(typed.get("title").map(String::as_str), Some("Ship the rocket"));
        let flash = take_flash(&req);
        assert!(flash.is_none(), "the typed cookie is not a flash");
    }

    #[test]
    fn a_flash_reads_back_exactly() {
        let message = "Saved “A & B” + 100% of it; a|b, c@d";
        let response = see_other_with_form_error("/x", Some("title"), message, &[]);
        let cookie = response.cookies().find(|c| c.name() == FLASH_COOKIE).unwrap();
        let req = actix_web::test::TestRequest::default().cookie(cookie.into_owned()).to_http_request();
        let flash = take_flash(&req).unwrap();
        assert_eq!(
            (flash.kind, flash.message.as_str(), flash.field.as_deref()),
            ("error", message, Some("title"))
        );
    }
}
