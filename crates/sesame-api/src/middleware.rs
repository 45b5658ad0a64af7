//! Two concerns around every request: CORS for the browser SDKs (origins come from the client
//! store, which a static CORS layer cannot consult), and one error shape for everything,
//! including what actix answers by itself (404, 405, 413).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::routes::AppState;

/// Request headers the browser SDKs send (auth0.js: `auth0-client`, `content-type`,
/// `x-request-language`).
const ALLOWED_HEADERS: &str = "auth0-client, content-type, x-request-language, authorization, accept, accept-language";
const EXPOSED_HEADERS: &str = "x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after";

pub async fn cors_and_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // The path only: query strings can hold link secrets and must never reach a log.
    let path = req.path().to_owned();
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(o), Some(state)) => state.sesame.ports.clients.origin_allowed(o).await.unwrap_or(false),
        _ => false,
    };
    let preflight = method == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
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
    tracing::info!(
        %method,
        path,
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
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
