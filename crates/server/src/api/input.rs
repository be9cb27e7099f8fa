//! What a request carries — a JSON body ([`Body`]) and a query string ([`Params`]) — read
//! with the refusal naming what is wrong in the caller's terms: the field (`"field":
//! "project_id"`), what it should be, and never the parser's internals (no "line 1 column 19",
//! no Rust type names).
//!
//! - A body that is not JSON: 400 `bad_request`; larger than [`BODY_LIMIT`]: 413
//!   `too_large`; without `Content-Type: application/json`: 415 `unsupported_media_type`.
//! - A body or a query that is JSON (or a query string) but not what the endpoint takes: 422
//!   `invalid` with the field — an unknown field, a missing one, a wrong type or an unknown
//!   value of an enumeration.

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Failure};

/// The largest JSON body the API reads.
pub const BODY_LIMIT: usize = 256 * 1024;

/// A JSON request body that must be an object with the fields of `T` (no others). serde reads
/// a struct from a JSON array too (by position), which would pass by the refusal of unknown
/// fields: a body that is not an object is refused before anything is read from it.
pub struct Body<T>(pub T);

impl<T> std::ops::Deref for Body<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let mut value = json.await?.into_inner();
            if !value.is_object() {
                return Err(ApiError(Failure::invalid("The body must be a JSON object.")).into());
            }
            whole_numbers(&mut value);
            if let Some(field) = holding_nul(&value, "") {
                return Err(ApiError(nul_refused().on_field(field)).into());
            }
            serde_path_to_error::deserialize(value).map(Body).map_err(|e| ApiError(refused(&e)).into())
        })
    }
}

/// The first field (its path) whose text holds a NUL character, which no text column keeps
/// (PostgreSQL's cannot; in SQLite's it would cut names short for most readers).
fn holding_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    let at = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            Some(if path.is_empty() { ".".into() } else { path.into() })
        }
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| holding_nul(item, &at(&i.to_string())))
        }
        serde_json::Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            if name.contains('\0') { Some(at(name)) } else { holding_nul(item, &at(name)) }
        }),
        _ => None,
    }
}

/// The refusal of a NUL character, on the API and in forms.
pub(crate) fn nul_refused() -> Failure {
    Failure::invalid("This text holds a NUL character, which cannot be stored: remove it and try again.")
}

/// Numbers without a fraction written as decimals (`7.0`) as the integers they are: JSON Schema
/// counts them as integers, so a field the document says is an integer takes them.
fn whole_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// A query string read into `T`, refused like a body (422 naming the parameter).
pub struct Params<T>(pub T);

impl<T> std::ops::Deref for Params<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Params<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let query =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(req.query_string().as_bytes()));
        std::future::ready(
            serde_path_to_error::deserialize(query).map(Params).map_err(|e| ApiError(refused(&e)).into()),
        )
    }
}

/// The answer to a body that could not be read as JSON at all (the `JsonConfig` handler).
pub fn unreadable(error: &actix_web::error::JsonPayloadError) -> Failure {
    use actix_web::error::JsonPayloadError as E;
    match error {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("The body is larger than the API takes ({} KiB).", BODY_LIMIT / 1024),
        ),
        E::ContentType => Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON, with `Content-Type: application/json`.",
        ),
        E::Deserialize(_) => {
            Failure::new(StatusCode::BAD_REQUEST, "bad_request", "The body is not valid JSON.")
        }
        _ => Failure::new(StatusCode::BAD_REQUEST, "bad_request", "The body could not be read."),
    }
}

/// A value that is not what the endpoint takes: 422 naming the field and what it should be.
fn refused<E: std::fmt::Display>(error: &serde_path_to_error::Error<E>) -> Failure {
    let inner = error.inner().to_string();
    let path = error.path().to_string();
    let (field, message) = explain(&path, &inner);
    Failure::invalid(message).on_field(field)
}

/// The field and a sentence for serde's message `detail` about `path` (`.` when the problem
/// is the whole document).
fn explain(path: &str, detail: &str) -> (String, String) {
    let at = |name: &str| if path == "." { name.to_owned() } else { format!("{path}.{name}") };
    if let Some(name) = quoted_after(detail, "unknown field ") {
        let known = detail.rsplit_once(", expected").map(|(_, rest)| expected_list(rest)).unwrap_or_default();
        let message = match known.as_str() {
            "" => format!("`{name}` is not a field of this request."),
            known => format!("`{name}` is not a field of this request; it takes {known}."),
        };
        // The path already ends at the unknown field.
        let field = if path == "." { name.clone() } else { path.to_owned() };
        return (field, message);
    }
    if let Some(name) = quoted_after(detail, "missing field ") {
        return (at(&name), format!("`{name}` is required."));
    }
    if let Some(name) = quoted_after(detail, "duplicate field ") {
        return (at(&name), format!("`{name}` is given more than once."));
    }
    let field = if path == "." { String::new() } else { path.to_owned() };
    let subject = if field.is_empty() { "The value".to_owned() } else { format!("`{field}`") };
    if let Some(value) = quoted_after(detail, "unknown variant ") {
        let known = detail.rsplit_once(", expected").map(|(_, rest)| expected_list(rest)).unwrap_or_default();
        return (field, format!("{subject} cannot be `{value}`: use {known}."));
    }
    if let Some((_, expected)) = detail.rsplit_once(", expected ") {
        return (field, format!("{subject} must be {}.", kind_of(expected)));
    }
    (field, format!("{subject} is not valid here."))
}

/// The name in backquotes right after `prefix` in `detail`.
fn quoted_after(detail: &str, prefix: &str) -> Option<String> {
    let rest = detail.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// serde's "one of `a`, `b`" (or "`a` or `b`") as "`a`, `b`".
fn expected_list(rest: &str) -> String {
    let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// What serde expected, in words for people who write JSON rather than Rust.
fn kind_of(expected: &str) -> &'static str {
    let expected = expected.trim();
    match expected {
        e if e.contains("i64")
            || e.contains("u64")
            || e.contains("i32")
            || e.contains("u32")
            || e.contains("integer") =>
        {
            "a whole number"
        }
        e if e.contains("f64") || e.contains("f32") || e.contains("number") => "a number",
        e if e.contains("bool") => "`true` or `false`",
        e if e.contains("struct") || e.contains("map") || e.contains("object") => "an object",
        e if e.contains("string") || e.contains("str") || e.contains("char") => "a string",
        e if e.contains("sequence") || e.contains("array") => "a list",
        _ => "of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Task {
        title: String,
        project_id: Option<i64>,
        status: Option<Status>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Status {
        Todo,
        Done,
    }

    fn refusal(json: &str) -> (String, String) {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let error = serde_path_to_error::deserialize::<_, Task>(value).unwrap_err();
        let failure = refused(&error);
        assert_eq!((failure.status.as_u16(), failure.code), (422, "invalid"));
        (failure.field.unwrap_or_default(), failure.message)
    }

    #[test]
    fn whole_numbers_written_as_decimals_are_integers() {
        let mut value = serde_json::json!({ "a": 7.0, "b": [1.5, -2.0], "c": { "d": 1e3 }, "e": "7.0" });
        whole_numbers(&mut value);
        assert_eq!(value, serde_json::json!({ "a": 7, "b": [1.5, -2], "c": { "d": 1000 }, "e": "7.0" }));
    }

    #[test]
    fn refusals_name_the_field_and_what_it_should_be() {
        assert_eq!(
            refusal(r#"{"title":"a","colour":"red"}"#),
            (
                "colour".into(),
                "`colour` is not a field of this request; it takes `title`, `project_id`, `status`.".into()
            )
        );
        assert_eq!(refusal(r#"{"project_id":1}"#), ("title".into(), "`title` is required.".into()));
        assert_eq!(
            refusal(r#"{"title":"a","project_id":"seven"}"#),
            ("project_id".into(), "`project_id` must be a whole number.".into())
        );
        assert_eq!(
            refusal(r#"{"title":"a","status":"someday"}"#),
            ("status".into(), "`status` cannot be `someday`: use `todo`, `done`.".into())
        );
        assert_eq!(refusal(r#"{"title":5}"#), ("title".into(), "`title` must be a string.".into()));
        // Nothing of the parser's vocabulary reaches the caller.
        for json in
            [r#"{"title":5}"#, r#"{"title":"a","project_id":1.5}"#, r#"{"title":"a","project_id":[1]}"#]
        {
            let (_, message) = refusal(json);
            for internal in ["i64", "line", "column", "invalid type", "Json"] {
                assert!(!message.contains(internal), "{message}");
            }
        }
    }
}
