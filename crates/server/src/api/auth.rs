//! Bearer-token authentication of the API. Wrong tokens count against the client's address;
//! past too many, wrong tokens get 429 — valid ones from that address are still served. A request without a token is 401, and counts for
//! nothing (it guesses nothing). A read-only token may only read (GET, HEAD, OPTIONS): any other
//! method is 403.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use silo_accounts::tokens::TokenPrincipal;

use crate::error::{ApiError, Failure};
use crate::request::{client_addr, state};

/// The principal of the request's bearer token (extractor; 401 without a valid one).
pub struct Bearer(pub TokenPrincipal);

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let app = state(&req);
            let token = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|token| !token.is_empty());
            // No token is no guess: 401, outside the throttle of wrong ones.
            let Some(token) = token else { return Err(ApiError(Failure::unauthorized())) };
            // A valid token is served even from an address that sent many invalid ones: the
            // throttle slows guessing, it must not shut out the others behind one NAT or proxy.
            let client = client_addr(&req);
            match app.accounts().tokens().authenticate(token).await? {
                Some(principal) if principal.read_only && !req.method().is_safe() => {
                    Err(ApiError(Failure::forbidden("This token is read-only: it may only read.")))
                }
                Some(principal) => Ok(Bearer(principal)),
                None => {
                    if let Err(retry) = app.api_throttle.check("bearer", &client) {
                        let failure = Failure::new(
                            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                            "throttled",
                            "Too many requests with invalid tokens; wait and retry.",
                        );
                        return Err(ApiError(failure.retry_after(retry)));
                    }
                    app.api_throttle.failed("bearer", &client);
                    Err(ApiError(Failure::unauthorized()))
                }
            }
        })
    }
}

/// An operator token (extractor; 403 for a personal token).
pub struct OperatorToken(pub TokenPrincipal);

impl FromRequest for OperatorToken {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bearer = Bearer::from_request(req, payload);
        Box::pin(async move {
            let Bearer(principal) = bearer.await?;
            if principal.tenant.is_some() {
                return Err(ApiError(Failure::forbidden("This endpoint needs an operator token.")));
            }
            Ok(OperatorToken(principal))
        })
    }
}
