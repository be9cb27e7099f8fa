//! Typed identifiers: [`TenantId`] (UUID v7) and [`TenantSlug`] (a validated URL name).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identity of a tenant: a UUID v7, never reused. Its database path derives from it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TenantId {
    type Err = SlugError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| SlugError::NotAnId(s.to_owned()))
    }
}

impl TryFrom<String> for TenantId {
    type Error = SlugError;

    fn try_from(stored: String) -> Result<Self, SlugError> {
        stored.parse()
    }
}

/// Why a slug (or id) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Shorter than 3 or longer than 63 characters.
    #[error("invalid slug `{0}`: it must be 3 to 63 characters long")]
    Length(String),
    /// A character outside `a-z`, `0-9`, `-`.
    #[error("invalid slug `{0}`: use only lowercase letters a-z, digits 0-9 and `-`")]
    Characters(String),
    /// Leading, trailing or doubled dash.
    #[error("invalid slug `{0}`: it must not start or end with `-` or contain `--`")]
    Dashes(String),
    /// A word kept for Silo's own routes and hosts.
    #[error("invalid slug `{0}`: it is reserved")]
    Reserved(String),
    /// Not a UUID.
    #[error("`{0}` is not a tenant id (UUID)")]
    NotAnId(String),
}

impl SlugError {
    /// What to type instead, in words for the person who typed it (a form shows it next to
    /// the field).
    pub fn advice(&self) -> String {
        match self {
            Self::Length(_) => {
                "Use 3 to 63 characters: lower-case letters, digits and dashes, e.g. acme-corp.".to_owned()
            }
            Self::Characters(_) => "Use lower-case letters, digits and dashes, e.g. acme-corp.".to_owned(),
            Self::Dashes(_) => {
                "Start and end with a letter or digit, with single dashes between words, e.g. acme-corp."
                    .to_owned()
            }
            Self::Reserved(slug) => {
                format!("`{slug}` is kept for Silo itself: choose another, e.g. {slug}-team.")
            }
            Self::NotAnId(_) => self.to_string(),
        }
    }
}

/// Names kept for Silo's own routes, hosts and well-known paths.
pub const RESERVED: &[&str] = &[
    "admin",
    "api",
    "www",
    "app",
    "assets",
    "static",
    "login",
    "logout",
    "signup",
    "account",
    "auth",
    "w",
    "healthz",
    "readyz",
    "metrics",
    "mail",
    "smtp",
    "ftp",
    "root",
    "support",
    "help",
    "status",
    "docs",
    "blog",
    "billing",
    "system",
    "silo",
    "dashboard",
    "settings",
    "new",
    "null",
    "undefined",
];

/// A tenant's URL name: `[a-z0-9-]{3,63}`, no leading, trailing or double dash, not reserved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Validates a slug.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if !(3..=63).contains(&s.len()) {
            // `len` counts bytes, so multi-byte input is caught below when it fits.
            return Err(SlugError::Length(s.to_owned()));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(SlugError::Characters(s.to_owned()));
        }
        if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(SlugError::Dashes(s.to_owned()));
        }
        if RESERVED.contains(&s) {
            return Err(SlugError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An address suggested from a workspace's name: "Acme Rockets, Inc." → `acme-rockets-inc`.
    /// Letters with accents lose them where they are Latin; anything else separates words. A
    /// name with too little to make an address of, or a reserved word, gets `-team` added; one
    /// that makes nothing at all suggests nothing.
    pub fn suggest(name: &str) -> Option<Self> {
        let mut slug = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            let c = fold_accent(c);
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                slug.push(c);
            } else if c == '\'' || c == '’' {
                // "Bob's" is one word: bobs.
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
            if slug.len() >= 56 {
                break;
            }
        }
        let slug = slug.trim_end_matches('-');
        if slug.is_empty() {
            return None;
        }
        Self::parse(slug).ok().or_else(|| Self::parse(&format!("{slug}-team")).ok())
    }
}

/// The letter without its accent, for the Latin letters that have one; any other as it is.
fn fold_accent(c: char) -> char {
    const FOLDS: [(&str, char); 15] = [
        ("àáâãäåāă", 'a'),
        ("çćč", 'c'),
        ("ďđ", 'd'),
        ("èéêëēėęě", 'e'),
        ("ğ", 'g'),
        ("ìíîïī", 'i'),
        ("ł", 'l'),
        ("ñńň", 'n'),
        ("òóôõöøō", 'o'),
        ("řŕ", 'r'),
        ("śšş", 's'),
        ("ťţ", 't'),
        ("ùúûüūů", 'u'),
        ("ýÿ", 'y'),
        ("žźż", 'z'),
    ];
    FOLDS.iter().find(|(accented, _)| accented.contains(c)).map_or(c, |(_, plain)| *plain)
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantSlug {
    type Err = SlugError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantSlug {
    type Error = SlugError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantSlug> for String {
    fn from(slug: TenantSlug) -> Self {
        slug.0
    }
}

/// A reference to a tenant as an operator types it: a slug or a UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantRef {
    /// By id.
    Id(TenantId),
    /// By slug.
    Slug(TenantSlug),
}

impl FromStr for TenantRef {
    type Err = SlugError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<TenantId>() {
            Ok(id) => Ok(Self::Id(id)),
            Err(_) => TenantSlug::parse(s).map(Self::Slug),
        }
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Slug(slug) => slug.fmt(f),
        }
    }
}

impl PartialEq<str> for TenantSlug {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TenantSlug {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_suggested_from_a_name() {
        let suggest = |name: &str| TenantSlug::suggest(name).map(|s| s.to_string());
        assert_eq!(suggest("Acme Rockets, Inc.").as_deref(), Some("acme-rockets-inc"));
        assert_eq!(suggest("  Café Zürich — Ölbaum ").as_deref(), Some("cafe-zurich-olbaum"));
        assert_eq!(suggest("Łódź 2026").as_deref(), Some("lodz-2026"));
        assert_eq!(suggest("Bob’s Rockets").as_deref(), Some("bobs-rockets"));
        assert_eq!(suggest("AB").as_deref(), Some("ab-team"), "too short");
        assert_eq!(suggest("Admin").as_deref(), Some("admin-team"), "reserved");
        assert_eq!(suggest("東京").as_deref(), None, "nothing to make an address of");
        assert_eq!(suggest("!!!"), None);
        let long = suggest(&"word ".repeat(40)).unwrap();
        assert!(long.len() <= 63 && !long.ends_with('-') && TenantSlug::parse(&long).is_ok(), "{long}");
        assert!(SlugError::Characters("Acme".into()).advice().contains("e.g. acme-corp"));
    }

    #[test]
    fn good_slugs() {
        for ok in ["acme", "a-b-c", "x9z", "team-42", &"a".repeat(63)] {
            assert_eq!(TenantSlug::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn bad_slugs_say_why() {
        type Check = fn(&SlugError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("..", |e| matches!(e, SlugError::Length(_))),
            ("", |e| matches!(e, SlugError::Length(_))),
            ("ab", |e| matches!(e, SlugError::Length(_))),
            ("a/b", |e| matches!(e, SlugError::Characters(_))),
            ("../etc", |e| matches!(e, SlugError::Characters(_))),
            ("UPPER", |e| matches!(e, SlugError::Characters(_))),
            ("café", |e| matches!(e, SlugError::Characters(_))),
            ("日本語", |e| matches!(e, SlugError::Characters(_))),
            ("a b c", |e| matches!(e, SlugError::Characters(_))),
            ("-abc", |e| matches!(e, SlugError::Dashes(_))),
            ("abc-", |e| matches!(e, SlugError::Dashes(_))),
            ("a--b", |e| matches!(e, SlugError::Dashes(_))),
            ("admin", |e| matches!(e, SlugError::Reserved(_))),
            ("api", |e| matches!(e, SlugError::Reserved(_))),
            ("www", |e| matches!(e, SlugError::Reserved(_))),
        ];
        for (input, check) in cases {
            let err = TenantSlug::parse(input).unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
            assert!(err.to_string().contains("invalid slug"), "{err}");
        }
        let long = "a".repeat(64);
        assert!(matches!(TenantSlug::parse(&long), Err(SlugError::Length(_))));
    }

    #[test]
    fn ids_are_v7_and_round_trip() {
        let id = TenantId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        assert!(matches!("nope".parse::<TenantId>(), Err(SlugError::NotAnId(_))));
    }

    #[test]
    fn tenant_refs_accept_slug_or_id() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantRef>().unwrap(), TenantRef::Id(id));
        assert!(matches!("acme".parse::<TenantRef>().unwrap(), TenantRef::Slug(_)));
        assert!("A".parse::<TenantRef>().is_err());
    }
}
