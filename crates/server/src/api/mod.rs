//! The JSON API under `/api/v1`, for bearer tokens (`Authorization: Bearer silo_…`).
//!
//! Handlers are registered through `utoipa-actix-web`, which only accepts services that carry
//! a `#[utoipa::path]` description: a route cannot be added without being documented in
//! `/api/v1/openapi.json` (and a test walks the document against the live routes).
//!
//! - [`tenants`]: the operator API (operator tokens).
//! - [`jobs`]: durable jobs — tenant exports, reading and listing jobs (operator tokens).
//! - [`privacy`]: the personal-data manifests (operator tokens).
//! - [`workspace`]: a workspace's projects, tasks and search (personal tokens of that workspace).

mod auth;
mod jobs;
mod privacy;
mod tenants;
mod workspace;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ApiError, Failure, REVALIDATE};

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
    /// Machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `gone`, `invalid`, `throttled`, `unavailable`, `internal`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// The document's frame: title, version and the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(title = "Silo API", version = "1", description = "Operators manage tenants; members work in their workspace."),
    components(schemas(ErrorBody, ErrorDetail)),
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
            web::JsonConfig::default().limit(256 * 1024).error_handler(|e, _| bad_request(e.to_string())),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request(e.to_string())))
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError(Failure::not_found()).into()))
        .route("/openapi.json", web::get().to(openapi_json))
        .configure(tenants::routes)
        .configure(jobs::routes)
        .configure(privacy::routes)
        .configure(workspace::routes)
        .default_service(web::to(|| async { Err::<HttpResponse, _>(ApiError(Failure::not_found())) }))
}

/// The query of an endpoint that takes no parameters but changes something: an unknown one
/// (a misspelt `dry_run`, say) is refused with 400 naming it, never ignored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A JSON request body that must be an object with the fields of `T`. serde reads a struct from
/// a JSON array too (by position), which would pass by the refusal of unknown fields: a body
/// that is not an object is refused with 400 before anything is read from it.
pub struct Body<T>(pub T);

impl<T> std::ops::Deref for Body<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            if !value.is_object() {
                return Err(bad_request("Json deserialize error: the body must be a JSON object".into()));
            }
            serde_json::from_value(value)
                .map(Body)
                .map_err(|e| bad_request(format!("Json deserialize error: {e}")))
        })
    }
}

fn bad_request(message: String) -> actix_web::Error {
    ApiError(Failure::new(actix_web::http::StatusCode::BAD_REQUEST, "bad_request", message)).into()
}

async fn openapi_json(req: HttpRequest) -> HttpResponse {
    let doc = req.app_data::<web::Data<OpenApiJson>>().map(|d| d.0.clone()).unwrap_or_default();
    HttpResponse::Ok().content_type("application/json").body(doc)
}

/// Page size from `?limit=`.
fn limit(requested: Option<i64>) -> i64 {
    silo_workspace::page_size(requested, 20)
}

/// Parses an opaque cursor (an id or an offset); a malformed one is a 400.
fn cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError(Failure::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "bad_request",
                    "malformed cursor",
                ))
            })
        })
        .transpose()
}
