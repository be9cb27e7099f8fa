//! The JSON API under `/api/v1`, for bearer tokens (`Authorization: Bearer silo_…`).
//!
//! Handlers are registered through `utoipa-actix-web`, which only accepts services that carry
//! a `#[utoipa::path]` description: a route cannot be added without being documented in
//! `/api/v1/openapi.json` (and a test walks the document against the live routes).
//!
//! - [`tenants`]: the operator API (operator tokens).
//! - [`jobs`]: durable jobs — tenant exports, reading and listing jobs (operator tokens).
//! - [`privacy`]: the personal-data manifests (operator tokens).
//! - [`workspace`]: a workspace's projects, tasks and search (personal tokens of that workspace);
//!   [`people`]: its comments and members.
//! - [`input`]: bodies and query strings, refused naming the field ([`Body`], [`Params`]).
//!
//! Every answer is JSON, errors too (`{"error": {"code", "message", "field"?}}`): an unknown
//! path is 404, a known path with another method 405 with `Allow` (both from the document's
//! routes, [`Routes`]).

mod auth;
pub(crate) mod input;
mod jobs;
mod people;
mod privacy;
mod tenants;
mod workspace;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ApiError, Failure, REVALIDATE};
pub use input::{Body, Params};

/// A read's answer with its validator (`ETag`), when it has one.
pub struct Tagged<R>(pub R, pub Option<String>);

impl<R: actix_web::Responder> actix_web::Responder for Tagged<R> {
    type Body = R::Body;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse<Self::Body> {
        let mut response = self.0.respond_to(req);
        if let Some(etag) = self.1
            && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&etag)
        {
            let headers = response.headers_mut();
            headers.insert(actix_web::http::header::ETAG, value);
            headers.insert(
                actix_web::http::header::CACHE_CONTROL,
                actix_web::http::header::HeaderValue::from_static(REVALIDATE),
            );
        }
        response
    }
}

/// The error document of every failed request.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `gone`, `too_large`, `unsupported_media_type`,
    /// `invalid`, `suspended`, `throttled`, `unavailable`, `disk_low`, `disk_full`,
    /// `storage_quota_exceeded`, `internal`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The request's field it is about (a body's property, a query parameter), when it is
    /// about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The document's frame: title, version and the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(title = "Silo API", version = "1", description = "Operators manage tenants; members work in their workspace."),
    // Schemas that only query parameters name (utoipa collects those of bodies and answers).
    components(schemas(ErrorBody, ErrorDetail, silo_tenancy::TenantSort, silo_workspace::tasks::TaskStatus, silo_tenancy::TenantStatus, silo_jobs::JobStatus)),
    modifiers(&BearerScheme),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The served OpenAPI document (JSON), built once per worker with the routes.
pub struct OpenApiJson(pub String);

/// The keys of an OpenAPI path item that are operations (the others: `parameters`, `summary`, …).
const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// What any operation may answer whatever it does, beside what its own description lists.
const ANY_OPERATION: [(&str, &str); 5] = [
    ("422", "A query parameter (or the body) is not what the operation takes: `field` names it."),
    ("423", "The workspace is suspended."),
    ("429", "Too many requests: wait `Retry-After` seconds."),
    ("503", "Busy, in maintenance, or out of disk: retry after `Retry-After` seconds."),
    ("507", "The workspace's storage quota is used up: nothing was saved."),
];

/// What an operation that reads a body may also answer.
const WITH_BODY: [(&str, &str); 3] = [
    ("400", "The body is not valid JSON."),
    ("413", "The body is larger than the API reads (256 KiB)."),
    ("415", "The body is not sent as `Content-Type: application/json`."),
];

/// The slug pattern of the request schemas (`silo_core::TenantSlug`'s rule; the reserved words
/// are added by [`document`]).
const SLUG_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// Rules between a body's fields that the derived schemas cannot state (JSON Schema `not`):
/// a restore takes a moment or a backup, not both; a move a server or a region.
const EXCLUSIVE: [(&str, [&str; 2]); 2] =
    [("RestoreRequest", ["at", "backup"]), ("MoveRequest", ["node", "region"])];

/// What this installation accepts where the code cannot say it: its plans and regions.
#[derive(Clone)]
pub struct Choices {
    /// The configured plans' names.
    pub plans: Vec<String>,
    /// The configured regions' names.
    pub regions: Vec<String>,
}

/// The served document: the routes' own descriptions, plus what every operation may answer
/// whatever it does ([`ANY_OPERATION`], [`WITH_BODY`], 404 where a path names something, 403
/// where it changes something: a read-only token may not);
/// every request body closed to fields it does not name (`additionalProperties: false`: the
/// API refuses them, 422 naming the field); `plan` and `region` fields limited to `choices`,
/// and slugs to those not reserved.
pub fn document(openapi: &utoipa::openapi::OpenApi, choices: &Choices) -> String {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    let error = |why: &str| {
        serde_json::json!({
            "description": why,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
        })
    };
    let mut bodies = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(operations) = item.as_object_mut() else { continue };
            for (method, operation) in
                operations.iter_mut().filter(|(key, _)| HTTP_METHODS.contains(&key.as_str()))
            {
                let writes = !matches!(method.as_str(), "get" | "head" | "options");
                let body = &operation["requestBody"]["content"]["application/json"]["schema"]["$ref"];
                let reads_body = !operation["requestBody"].is_null();
                if let Some(name) = body.as_str().and_then(|r| r.rsplit('/').next()) {
                    bodies.push(name.to_owned());
                }
                let Some(responses) = operation["responses"].as_object_mut() else { continue };
                let mut add = |code: &str, why: &str| {
                    responses.entry(code.to_owned()).or_insert_with(|| error(why));
                };
                ANY_OPERATION.iter().for_each(|(code, why)| add(code, why));
                if reads_body {
                    WITH_BODY.iter().for_each(|(code, why)| add(code, why));
                }
                if writes {
                    add("403", "Not allowed: this account may not, or the token is read-only.");
                }
                if path.contains('{') {
                    add("404", "Nothing here (or nothing this token may see).");
                }
            }
        }
    }
    for name in bodies {
        let Some(schema) = doc["components"]["schemas"].get_mut(&name).and_then(|s| s.as_object_mut()) else {
            continue;
        };
        schema.insert("additionalProperties".to_owned(), serde_json::Value::Bool(false));
        if let Some((_, [a, b])) = EXCLUSIVE.iter().find(|(n, _)| *n == name) {
            // Both given (not null) is refused; either, or neither, is fine.
            let given = serde_json::json!({ "type": "string" });
            schema.insert(
                "not".to_owned(),
                serde_json::json!({ "required": [a, b], "properties": { *a: given, *b: given } }),
            );
        }
        let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { continue };
        for (field, property) in properties.iter_mut() {
            let allowed = match field.as_str() {
                "plan" => &choices.plans,
                "region" => &choices.regions,
                _ if property["pattern"] == SLUG_PATTERN => {
                    property["not"] = serde_json::json!({ "enum": silo_core::ids::RESERVED });
                    continue;
                }
                _ => continue,
            };
            let mut values: Vec<serde_json::Value> =
                allowed.iter().map(|v| serde_json::Value::from(v.as_str())).collect();
            if property["type"].as_array().is_some_and(|t| t.iter().any(|t| t == "null")) {
                values.push(serde_json::Value::Null);
            }
            property["enum"] = serde_json::Value::Array(values);
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The `/api/v1` scope with every documented handler, and the undocumented document route.
pub fn scope() -> utoipa_actix_web::scope::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope("/api/v1")
        .app_data(
            web::JsonConfig::default()
                .limit(input::BODY_LIMIT)
                .error_handler(|e, _| ApiError(input::unreadable(&e)).into()),
        )
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError(Failure::not_found()).into()))
        .route("/openapi.json", web::get().to(openapi_json))
        .configure(tenants::routes)
        .configure(jobs::routes)
        .configure(privacy::routes)
        .configure(workspace::routes)
        .default_service(web::to(unrouted))
}

/// The documented routes: each path's pattern (its segments, `{…}` matching any one) and its
/// methods, read from the OpenAPI document — the one list of what the API answers.
pub struct Routes(Vec<(Vec<String>, Vec<String>)>);

impl Routes {
    /// The routes of `document` (the OpenAPI JSON).
    pub fn of(document: &str) -> Self {
        let parsed: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let paths = parsed["paths"].as_object().cloned().unwrap_or_default();
        let routes = paths
            .into_iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_owned).collect();
                let methods = item
                    .as_object()
                    .map(|ops| {
                        ops.keys()
                            .filter(|m| HTTP_METHODS.contains(&m.as_str()))
                            .map(|m| m.to_ascii_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                (segments, methods)
            })
            .collect();
        Self(routes)
    }

    /// The methods documented for `path` (none: an unknown path).
    pub fn allowed(&self, path: &str) -> Vec<String> {
        let asked: Vec<&str> = path.split('/').collect();
        let mut methods: Vec<String> = self
            .0
            .iter()
            .filter(|(pattern, _)| {
                pattern.len() == asked.len()
                    && pattern
                        .iter()
                        .zip(&asked)
                        .all(|(p, a)| (p.starts_with('{') && !a.is_empty()) || p == a)
            })
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        methods.sort();
        methods.dedup();
        methods
    }
}

/// What no route answered: 405 with `Allow` for a documented path, else 404.
pub(crate) async fn unrouted(req: HttpRequest) -> HttpResponse {
    let allowed = req.app_data::<web::Data<Routes>>().map(|r| r.allowed(req.path())).unwrap_or_default();
    if allowed.is_empty() {
        return actix_web::ResponseError::error_response(&ApiError(Failure::not_found()));
    }
    let allow = allowed.join(", ");
    let failure = Failure::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not answered here; use {allow}.", req.method()),
    );
    let mut response = actix_web::ResponseError::error_response(&ApiError(failure));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// The query of an endpoint that takes no parameters but changes something: an unknown one
/// (a misspelt `dry_run`, say) is refused with 422 naming it, never ignored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

async fn openapi_json(req: HttpRequest) -> HttpResponse {
    let doc = req.app_data::<web::Data<OpenApiJson>>().map(|d| d.0.clone()).unwrap_or_default();
    HttpResponse::Ok().content_type("application/json").body(doc)
}

/// Page size from `?limit=`.
fn limit(requested: Option<i64>) -> i64 {
    silo_workspace::page_size(requested, 20)
}

/// Parses an opaque cursor (an id or an offset); a malformed one is refused (422, `cursor`).
fn cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw.filter(|c| !c.is_empty()) else { return Ok(None) };
    // Digits only, as documented (`parse` alone would take a sign).
    match raw.bytes().all(|b| b.is_ascii_digit()).then(|| raw.parse::<i64>().ok()).flatten() {
        Some(cursor) => Ok(Some(cursor)),
        None => Err(ApiError(Failure::invalid("`cursor` is not one this API gave out.").on_field("cursor"))),
    }
}
