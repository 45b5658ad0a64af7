//! The one mapping from use-case errors to Auth0's error responses (spec §2.2, §4.5, §5.3).

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use sesame_domain::{IdentifierError, Strategy};
use sesame_flows::authorize::GrantError;
use sesame_flows::client_auth::ClientAuthError;
use sesame_flows::exchange::ExchangeError;
use sesame_flows::start::StartError;
use sesame_ports::LimitDecision;

/// An error response: `{"error", "error_description"[, "error_uri"]}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub error_uri: Option<&'static str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into(), error_uri: None, headers: Vec::new() }
    }

    pub fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    /// A 5xx: the cause is logged here, once, and the body stays generic.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = ?cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The server encountered an internal error.")
    }

    pub fn unavailable(cause: &anyhow::Error) -> Self {
        tracing::warn!(error = ?cause, "a backing service is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The service is temporarily unavailable. Please try again later.",
        )
        .with_header(actix_web::http::header::RETRY_AFTER, "1")
    }

    /// Adds the `X-RateLimit-*` and `Retry-After` headers of a limited route. A `Retry-After` the
    /// error already carries (a 503's) stays when it asks for the longer wait.
    pub fn with_limit(mut self, limit: Option<&LimitDecision>) -> Self {
        if let Some(d) = limit {
            for (name, value) in limit_values(d) {
                let Ok(v) = HeaderValue::from_str(&value) else { continue };
                if name == actix_web::http::header::RETRY_AFTER
                    && self.headers.iter().any(|(n, old)| *n == name && seconds(old) >= seconds(&v))
                {
                    continue;
                }
                self.headers.retain(|(n, _)| *n != name);
                self.headers.push((name, v));
            }
        }
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.error, self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::json!({"error": self.error, "error_description": self.description});
        if let Some(uri) = self.error_uri {
            body["error_uri"] = serde_json::Value::from(uri);
        }
        let mut resp = HttpResponse::build(self.status);
        for (k, v) in &self.headers {
            resp.insert_header((k.clone(), v.clone()));
        }
        resp.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(body)
    }
}

/// A `Retry-After` of delay-seconds (the only form Sesame sends).
fn seconds(value: &HeaderValue) -> u64 {
    value.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn limit_values(d: &LimitDecision) -> [(HeaderName, String); 4] {
    // Integer seconds: auth0-python parses X-RateLimit-Reset with int().
    let reset = d.reset_at.unix_timestamp() + i64::from(d.reset_at.nanosecond() > 0);
    [
        (HeaderName::from_static("x-ratelimit-limit"), d.limit.to_string()),
        (HeaderName::from_static("x-ratelimit-remaining"), d.remaining.to_string()),
        (HeaderName::from_static("x-ratelimit-reset"), reset.to_string()),
        (actix_web::http::header::RETRY_AFTER, d.retry_after.as_secs().to_string()),
    ]
}

/// Puts the rate-limit headers on a successful response.
pub fn limit_headers(resp: &mut actix_web::HttpResponseBuilder, limit: Option<&LimitDecision>) {
    if let Some(d) = limit {
        for (name, value) in limit_values(d) {
            resp.insert_header((name, value));
        }
    }
}

pub const TOO_MANY_REQUESTS: &str =
    "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.";

/// Where a client-authentication failure happened: the codes differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Start,
    Token,
}

pub fn client_auth(err: ClientAuthError, at: Endpoint) -> ApiError {
    match err {
        ClientAuthError::MissingClientId => match at {
            Endpoint::Start => ApiError::bad_request("bad.client_id", "Missing required property: client_id"),
            Endpoint::Token => ApiError::bad_request("invalid_request", "Missing required parameter: client_id"),
        },
        ClientAuthError::UnknownClient => match at {
            Endpoint::Start => ApiError::bad_request("bad.client_id", "Unknown client"),
            Endpoint::Token => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Unknown client"),
        },
        ClientAuthError::AuthenticationRequired => {
            ApiError::new(StatusCode::FORBIDDEN, "unauthorized_client", "Client authentication is required")
        }
        ClientAuthError::InvalidCredentials => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client credentials")
        }
        ClientAuthError::Malformed(why) => match at {
            Endpoint::Start => ApiError::bad_request("bad.request", why),
            Endpoint::Token => ApiError::bad_request("invalid_request", why),
        },
        ClientAuthError::Store(e) => store(e),
    }
}

/// A store error: 503 when the store is unavailable, else a 500 (logged).
pub(crate) fn store(e: sesame_ports::StoreError) -> ApiError {
    match e {
        sesame_ports::StoreError::Unavailable(cause) => ApiError::unavailable(&cause),
        other => ApiError::internal(&anyhow::Error::new(other)),
    }
}

pub fn start(err: StartError) -> ApiError {
    match err {
        StartError::ConnectionNotFound => ApiError::bad_request("bad.connection", "Connection does not exist"),
        StartError::ConnectionDisabled => ApiError::bad_request("bad.connection", "Connection is disabled"),
        StartError::NoProvider(Strategy::Email) => {
            ApiError::bad_request("bad.connection", "No email provider is configured on this server")
        }
        StartError::NoProvider(Strategy::Sms) => {
            ApiError::bad_request("bad.connection", "No SMS provider is configured on this server")
        }
        StartError::EmailMissing => ApiError::bad_request("bad.email", "Missing required property: email"),
        StartError::EmailInvalid(raw) => {
            ApiError::bad_request("bad.email", format!("error in email - email format validation failed: {raw}"))
        }
        StartError::PhoneMissing => {
            ApiError::bad_request("bad.phone_number", "Missing required property: phone_number")
        }
        StartError::PhoneInvalid(IdentifierError::PhoneNotDialable) => {
            ApiError::bad_request("bad.phone_number", "error in phone_number - not a valid phone number in any country")
        }
        StartError::PhoneInvalid(_) => {
            ApiError::bad_request("bad.phone_number", r"String does not match pattern: ^\+[0-9]{1,15}$")
        }
        StartError::SignupDisabled => ApiError::bad_request("bad.connection", "Public signup is disabled"),
        StartError::Blocked => blocked(),
        StartError::BadAuthParams(why) => {
            ApiError::bad_request("bad.authParams", format!("error in authParams - {why}"))
        }
        StartError::SmsProviderError(reason) => ApiError::bad_request("sms_provider_error", reason),
        StartError::CountryNotAllowed => {
            ApiError::bad_request("bad.phone_number", "SMS to this phone number's country is not allowed")
        }
        StartError::CostlyNumber(kind) => ApiError::bad_request(
            "bad.phone_number",
            format!("SMS to this kind of number ({}) is not allowed", kind.label()),
        ),
        StartError::RateLimited => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", TOO_MANY_REQUESTS),
        StartError::Unavailable(cause) => ApiError::unavailable(&cause),
        StartError::Unexpected(cause) => ApiError::internal(&cause),
    }
}

pub const GRANT_TYPES_DOC: &str = "https://auth0.com/docs/clients/client-grant-types";

pub fn exchange(err: ExchangeError) -> ApiError {
    match err {
        ExchangeError::GrantNotAllowed => ApiError {
            error_uri: Some(GRANT_TYPES_DOC),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "unauthorized_client",
                "Grant type 'http://auth0.com/oauth/grant-type/passwordless/otp' not allowed for the client.",
            )
        },
        ExchangeError::RealmNotFound => ApiError::bad_request("invalid_request", "Connection does not exist"),
        ExchangeError::RealmDisabled => ApiError::bad_request("invalid_request", "Connection is disabled"),
        ExchangeError::WrongCode(Strategy::Email) => {
            ApiError::new(StatusCode::FORBIDDEN, "invalid_grant", "Wrong email or verification code.")
        }
        ExchangeError::WrongCode(Strategy::Sms) => {
            ApiError::new(StatusCode::FORBIDDEN, "invalid_grant", "Wrong phone number or verification code.")
        }
        ExchangeError::Exhausted => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_grant",
            "You've reached the maximum number of attempts. Please try to login again.",
        ),
        ExchangeError::Expired => ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_grant",
            "The verification code has expired. Please try to login again.",
        ),
        ExchangeError::AudienceNotFound(aud) => {
            ApiError::new(StatusCode::FORBIDDEN, "access_denied", format!("Service not found: {aud}"))
        }
        ExchangeError::RateLimited => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", TOO_MANY_REQUESTS)
        }
        ExchangeError::TooManyAttempts => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many failed attempts for this user. Please try again later.",
        ),
        ExchangeError::Blocked => blocked(),
        ExchangeError::Unavailable(cause) => ApiError::unavailable(&cause),
        ExchangeError::Unexpected(cause) => ApiError::internal(&cause),
    }
}

/// Auth0's answer for a blocked user, at start and at every grant.
pub fn blocked() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "user is blocked")
}

/// The legacy `/passwordless/verify` answers a wrong code as Auth0's `/oauth/ro` did.
pub fn legacy_verify(err: ExchangeError) -> ApiError {
    match err {
        ExchangeError::WrongCode(Strategy::Email) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_user_password", "Wrong email or verification code.")
        }
        ExchangeError::WrongCode(Strategy::Sms) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_user_password", "Wrong phone number or verification code.")
        }
        other => exchange(other),
    }
}

pub fn grant(err: GrantError) -> ApiError {
    match err {
        GrantError::GrantNotAllowed(g) => ApiError {
            error_uri: Some(GRANT_TYPES_DOC),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "unauthorized_client",
                format!("Grant type '{}' not allowed for the client.", g.as_str()),
            )
        },
        GrantError::InvalidGrant(why) => ApiError::new(StatusCode::FORBIDDEN, "invalid_grant", why),
        GrantError::Blocked => blocked(),
        GrantError::AccessDenied(why) => ApiError::new(StatusCode::FORBIDDEN, "access_denied", why),
        GrantError::RateLimited => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", TOO_MANY_REQUESTS),
        GrantError::Unavailable(cause) => ApiError::unavailable(&cause),
        GrantError::Unexpected(cause) => ApiError::internal(&cause),
    }
}
