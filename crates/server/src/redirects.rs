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

/// Longest flash message kept (characters).
const FLASH_CHARS: usize = 400;

/// A redirect that shows a message on the next page.
pub fn see_other_with_flash(location: &str, kind: &str, message: &str) -> HttpResponse {
    let mut response = see_other(location);
    // A cookie is at most 4 KiB: a message quoting a huge input would be dropped by the
    // browser, and the refusal would go unseen.
    let message: String = match message.char_indices().nth(FLASH_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    };
    let cookie = Cookie::build(FLASH_COOKIE, urlencode(&format!("{kind}|{message}")))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(60))
        .finish();
    let _ = response.add_cookie(&cookie);
    response
}

/// The flash message of this request, if any: `(kind, message)`.
pub fn take_flash(req: &HttpRequest) -> Option<(String, String)> {
    let raw = req.cookie(FLASH_COOKIE)?;
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={}", raw.value())).ok()?;
    let (kind, message) =
        decoded.into_iter().next()?.1.split_once('|').map(|(k, m)| (k.to_owned(), m.to_owned()))?;
    let kind = if kind == "error" { kind } else { "ok".to_owned() };
    Some((kind, message))
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
