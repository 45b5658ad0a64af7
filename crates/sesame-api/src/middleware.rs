//! Two concerns around every request: CORS for the browser SDKs (origins come from the client
//! store, which a static CORS layer cannot consult), and one error shape for everything,
//! including what actix answers by itself (404, 405, 413).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use tracing::Instrument as _;

use crate::routes::AppState;

/// Request headers the browser SDKs send (auth0.js: `auth0-client`, `content-type`,
/// `x-request-language`).
const ALLOWED_HEADERS: &str = "auth0-client, content-type, x-request-language, authorization, accept, accept-language";
const EXPOSED_HEADERS: &str = "x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after, x-request-id";

/// The header a request id comes in on (from a load balancer or the caller) and goes back on.
pub const REQUEST_ID: &str = "x-request-id";

/// A caller's request id when it is safe to log and echo (at most 128 of `[A-Za-z0-9._-]`),
/// else a fresh one: 16 random bytes in hex.
fn request_id(req: &ServiceRequest) -> String {
    let sent = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if let Some(id) = sent {
        return id.to_owned();
    }
    let mut bytes = [0u8; 16];
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.sesame.ports.random.fill(&mut bytes),
        None => bytes = time_based_id(),
    }
    hex::encode(bytes)
}

/// Only for a request served without state (never in the real app): time-based, unique enough.
fn time_based_id() -> [u8; 16] {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    nanos.to_le_bytes()
}

pub async fn cors_and_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let id = request_id(&req);
    // Every line logged while this request is served carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = handle(req, next).instrument(span.clone()).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(header::HeaderName::from_static(REQUEST_ID), v);
    }
    if crate::monitoring::recording() {
        crate::monitoring::request(
            res.request().match_pattern(),
            res.request().method(),
            res.status().as_u16(),
            started.elapsed(),
        );
    }
    let _entered = span.enter();
    tracing::info!(
        method = %res.request().method(),
        // The path only: query strings can hold link secrets and must never reach a log.
        path = res.request().path(),
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

async fn handle(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = req.method().clone();
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(o), Some(state)) => state.sesame.ports.clients.origin_allowed(o).await.unwrap_or(false),
        _ => false,
    };
    let preflight = method == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    // A NUL character in the path or the query can be in no identifier, id or URL Sesame keeps
    // (Postgres cannot store one): refused here, once for every route.
    let nul = req.uri().path().contains("%00") || req.query_string().contains("%00");
    let mut res = if nul && !preflight {
        let resp = if req.path().starts_with("/api/v2/") {
            HttpResponse::BadRequest().insert_header((header::CACHE_CONTROL, "no-store")).json(serde_json::json!({
                "statusCode": 400,
                "error": "Bad Request",
                "message": "Query validation error: 'The request must not contain NUL characters'.",
                "errorCode": "invalid_query_string",
            }))
        } else {
            HttpResponse::BadRequest().insert_header((header::CACHE_CONTROL, "no-store")).json(serde_json::json!({
                "error": "invalid_request",
                "error_description": "The request must not contain NUL characters",
            }))
        };
        req.into_response(resp)
    } else if preflight {
        let resp = if allowed {
            HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .finish()
        } else {
            HttpResponse::Forbidden().json(serde_json::json!({
                "error": "access_denied",
                "error_description": "Origin is not allowed",
            }))
        };
        req.into_response(resp)
    } else {
        let res = next.call(req).await?.map_into_boxed_body();
        normalise_error(res)
    };
    if allowed {
        let h = res.headers_mut();
        if let Some(Ok(o)) = origin.map(|o| HeaderValue::from_str(&o)) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    res.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(res)
}

/// Replaces any error response that is not already JSON with Auth0's error shape.
fn normalise_error(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    // Only what actix answers by itself (plain text or nothing) is replaced; our JSON errors
    // and HTML pages stay as they are.
    let ours = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if status.as_u16() < 400 || ours {
        return res;
    }
    let (error, description) = match status {
        StatusCode::NOT_FOUND => ("not_found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request", "Request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("invalid_request", "Unsupported content type"),
        s if s.is_client_error() => ("invalid_request", "Invalid request"),
        _ => ("server_error", "The server encountered an internal error."),
    };
    let (req, _) = res.into_parts();
    let resp = HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"error": error, "error_description": description}));
    ServiceResponse::new(req, resp)
}
