//! Auth0's Management API for users (`/api/v2/`): the paths, bodies, scopes and error shape
//! node-auth0's `ManagementClient` and auth0-python's `Auth0` use.
//!
//! Every call needs a `client_credentials` access token for `https://{domain}/api/v2/` holding
//! one of the endpoint's scopes, is rate limited per client, and every change is audited
//! (`sapi`). Errors are Auth0's Management API shape:
//! `{"statusCode": 403, "error": "Forbidden", "message": "…", "errorCode": "insufficient_scope"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value, json};
use sesame_domain::{ConnectionName, Email, Identifier, MetadataPatch, PhoneNumber, UserFilter, UserId, UserPatch};
use sesame_flows::users::{Actor, NewUser, UserAdminError, user_json};
use sesame_ports::{AuditEvent, AuditKind};

use crate::routes::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v2/users", web::get().to(list_users))
        .route("/api/v2/users", web::post().to(create_user))
        .route("/api/v2/users-by-email", web::get().to(users_by_email))
        .route("/api/v2/users/{id}", web::get().to(get_user))
        .route("/api/v2/users/{id}", web::patch().to(update_user))
        .route("/api/v2/users/{id}", web::delete().to(delete_user))
        .route("/api/v2/users/{id}/logs", web::get().to(user_logs));
}

/// A Management API error, in Auth0's shape.
#[derive(Debug)]
pub struct MgmtError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
    retry_after: Option<u64>,
}

impl MgmtError {
    fn new(status: StatusCode, message: impl Into<String>, code: Option<&'static str>) -> Self {
        Self { status, message: message.into(), code, retry_after: None }
    }

    fn bad_request(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, Some(code))
    }

    fn body(message: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("Payload validation error: '{message}'."), "invalid_body")
    }

    /// Auth0's "Payload validation error: '…' on property x."
    fn body_at(message: impl std::fmt::Display, property: &str) -> Self {
        Self::bad_request(format!("Payload validation error: '{message}' on property {property}."), "invalid_body")
    }

    fn query(message: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("Query validation error: '{message}'."), "invalid_query_string")
    }

    fn query_at(message: impl std::fmt::Display, property: &str) -> Self {
        Self::bad_request(
            format!("Query validation error: '{message}' on property {property}."),
            "invalid_query_string",
        )
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "The user does not exist.", Some("inexistent_user"))
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message, None)
    }
}

impl std::fmt::Display for MgmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for MgmtError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({
            "statusCode": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        });
        if let Some(code) = self.code {
            body["errorCode"] = json!(code);
        }
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(body)
    }
}

impl From<UserAdminError> for MgmtError {
    fn from(e: UserAdminError) -> Self {
        match e {
            UserAdminError::NotFound => Self::not_found(),
            UserAdminError::ConnectionNotFound => {
                Self::bad_request("The connection does not exist.", "inexistent_connection")
            }
            UserAdminError::Conflict => {
                Self::new(StatusCode::CONFLICT, "The user already exists.", Some("auth0_idp_error"))
            }
            UserAdminError::Invalid(why) => Self::bad_request(why, "invalid_body"),
            UserAdminError::Unavailable(cause) => unavailable(&cause),
            UserAdminError::Unexpected(cause) => internal(&cause),
        }
    }
}

fn unavailable(cause: &anyhow::Error) -> MgmtError {
    tracing::warn!(error = ?cause, "a backing service is unavailable");
    MgmtError {
        retry_after: Some(1),
        ..MgmtError::new(StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable.", None)
    }
}

fn internal(cause: &anyhow::Error) -> MgmtError {
    tracing::error!(error = ?cause, "management request failed");
    MgmtError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.", None)
}

fn store(e: sesame_ports::StoreError) -> MgmtError {
    MgmtError::from(UserAdminError::from(e))
}

/// The caller of one request, after its token and its rate limit were checked.
struct Caller {
    actor: Actor,
    scopes: Vec<String>,
}

impl Caller {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Checks the bearer token (ours, unexpired, a `client_credentials` token for the Management
/// API) and that it holds one of `any_of`, then takes one call from the client's budget.
async fn caller(state: &AppState, req: &HttpRequest, any_of: &[&str]) -> Result<Caller, MgmtError> {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| MgmtError::unauthorized("Missing authentication"))?;
    let sesame = &state.sesame;
    let claims = sesame.ports.tokens.verify(token).await.map_err(|_| MgmtError::unauthorized("Invalid token"))?;
    let audience = sesame.management_audience();
    let aud_ok = match &claims["aud"] {
        Value::String(a) => *a == audience,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(audience.as_str())),
        _ => false,
    };
    // Only a backend's own token: a user's token never reaches the users of others.
    let m2m = claims["gty"].as_str() == Some("client-credentials");
    if claims["iss"].as_str() != Some(sesame.settings.issuer.as_str()) || !aud_ok || !m2m {
        return Err(MgmtError::unauthorized("Invalid token"));
    }
    // The client must still exist and still hold each scope: deleting a backend, or taking a
    // scope away, takes effect at once, not when its tokens expire (the client is cached).
    let client_id = claims["azp"].as_str().unwrap_or_default().to_owned();
    let client = sesame
        .ports
        .clients
        .find(&sesame_domain::ClientId::new(client_id.clone()))
        .await
        .map_err(store)?
        .ok_or_else(|| MgmtError::unauthorized("Invalid token"))?;
    let held = client.api_scopes(&audience);
    let scopes: Vec<String> = claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .filter(|s| held.iter().any(|h| h == s))
        .map(str::to_owned)
        .collect();
    if !any_of.iter().any(|want| scopes.iter().any(|s| s == want)) {
        return Err(MgmtError::new(
            StatusCode::FORBIDDEN,
            format!("Insufficient scope, expected any of: {}", any_of.join(",")),
            Some("insufficient_scope"),
        ));
    }
    match sesame.management_limit(&client_id).await {
        Ok(Some(d)) if !d.allowed => {
            return Err(MgmtError {
                retry_after: Some(d.retry_after.as_secs().max(1)),
                ..MgmtError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Global limit has been reached",
                    Some("too_many_requests"),
                )
            });
        }
        Ok(_) => {}
        Err(e) => return Err(unavailable(&e)),
    }
    let ip = crate::wire::client_ip(req, &state.trusted_proxies);
    Ok(Caller { actor: Actor { client_id: Some(client_id), ip }, scopes })
}

fn query_map(req: &HttpRequest) -> Result<Vec<(String, String)>, MgmtError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| MgmtError::query("the query string cannot be parsed"))
}

fn only(query: &[(String, String)], allowed: &[&str]) -> Result<(), MgmtError> {
    let extra: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).filter(|k| !allowed.contains(k)).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(MgmtError::query(format!("Additional properties not allowed: {}", extra.join(","))))
    }
}

fn get<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn number(query: &[(String, String)], name: &str, default: u64, max: u64) -> Result<u64, MgmtError> {
    match get(query, name) {
        None | Some("") => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err(MgmtError::query_at(format!("Must be less or equal to {max}"), name)),
            Err(_) => Err(MgmtError::query_at("Expected type integer but found type string", name)),
        },
    }
}

fn boolean(query: &[(String, String)], name: &str) -> Result<bool, MgmtError> {
    match get(query, name) {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(MgmtError::query_at("Expected type boolean but found type string", name)),
    }
}

/// An address or number exactly as `/passwordless/start` takes it.
fn identifier_of(field: &str, raw: &str) -> Result<Identifier, String> {
    match field {
        "email" => Email::parse(raw)
            .map(Identifier::Email)
            .map_err(|_| format!("Object didn't pass validation for format email: {raw}")),
        _ => PhoneNumber::parse(raw)
            .map(Identifier::Phone)
            .map_err(|_| r"String does not match pattern ^\+[0-9]{1,15}$".to_owned()),
    }
}

/// `q` as the SDKs send it, for what Sesame can answer exactly: `email:"…"`,
/// `phone_number:"…"` and `user_id:"…"` (quotes optional); empty lists everyone.
fn filter_of(q: Option<&str>) -> Result<UserFilter, MgmtError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(UserFilter::All);
    };
    let unsupported = || {
        MgmtError::bad_request(
            "Sesame answers q=email:\"…\", q=phone_number:\"…\" and q=user_id:\"…\" (exact matches) only.",
            "invalid_query",
        )
    };
    let (field, value) = q.split_once(':').ok_or_else(unsupported)?;
    let value = value.trim();
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    if value.is_empty() || value.contains(['"', '*', ' ']) {
        return Err(unsupported());
    }
    match field.trim() {
        "email" => Ok(UserFilter::Identifier(identifier_of("email", value).map_err(|m| MgmtError::query_at(m, "q"))?)),
        "phone_number" => {
            Ok(UserFilter::Identifier(identifier_of("phone_number", value).map_err(|m| MgmtError::query_at(m, "q"))?))
        }
        "user_id" => Ok(UserFilter::Id(UserId(value.to_owned()))),
        _ => Err(unsupported()),
    }
}

/// A user as every endpoint answers it (with `app_metadata`: `read:users` shows it at Auth0,
/// and `read:users_app_metadata` exists to read it).
fn shown(user: &sesame_domain::User) -> Value {
    user_json(user)
}

#[utoipa::path(get, path = "/api/v2/users", tag = "management", security(("management" = [])),
    params(
        ("page" = Option<u64>, Query, description = "From 0"),
        ("per_page" = Option<u64>, Query, description = "At most 100; default 50"),
        ("include_totals" = Option<bool>, Query, description = "A page object instead of an array"),
        ("q" = Option<String>, Query, description = "`email:\"…\"`, `phone_number:\"…\"` or `user_id:\"…\"` (exact matches)"),
        ("search_engine" = Option<String>, Query, description = "`v1`, `v2` or `v3` (ignored)")),
    responses(
        (status = 200, description = "Users, oldest first (`read:users` or `read:users_app_metadata`)", body = crate::openapi::UserList),
        (status = 400, description = "A query Sesame cannot answer (`invalid_query_string`, `invalid_query`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list_users(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, MgmtError> {
    caller(&state, &req, &["read:users", "read:users_app_metadata"]).await?;
    let query = query_map(&req)?;
    only(
        &query,
        &["page", "per_page", "include_totals", "q", "search_engine", "sort", "fields", "include_fields", "connection"],
    )?;
    let page = number(&query, "page", 0, 1_000_000)?;
    let per_page = number(&query, "per_page", 50, 100)?;
    let totals = boolean(&query, "include_totals")?;
    if let Some(engine) = get(&query, "search_engine").filter(|e| !["v1", "v2", "v3"].contains(e)) {
        return Err(MgmtError::query_at(format!("No enum match for: \"{engine}\""), "search_engine"));
    }
    let filter = filter_of(get(&query, "q"))?;
    let found = state.sesame.ports.users.list(&filter, page, per_page).await.map_err(store)?;
    let users: Vec<Value> = found.users.iter().map(shown).collect();
    let body = if totals {
        json!({"start": page * per_page, "limit": per_page, "length": users.len(), "total": found.total, "users": users})
    } else {
        Value::Array(users)
    };
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(body))
}

#[utoipa::path(get, path = "/api/v2/users-by-email", tag = "management", security(("management" = [])),
    params(("email" = String, Query, description = "Normalised as at start")),
    responses(
        (status = 200, description = "The users with this address (`read:users`)", body = [crate::openapi::ManagementUser]),
        (status = 400, description = "No address, or one start would refuse (`invalid_query_string`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn users_by_email(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, MgmtError> {
    caller(&state, &req, &["read:users", "read:users_app_metadata"]).await?;
    let query = query_map(&req)?;
    only(&query, &["email", "fields", "include_fields"])?;
    let raw = get(&query, "email").ok_or_else(|| MgmtError::query("Missing required property: email"))?;
    let identifier = identifier_of("email", raw).map_err(|m| MgmtError::query_at(m, "email"))?;
    let found = state.sesame.ports.users.list(&UserFilter::Identifier(identifier), 0, 100).await.map_err(store)?;
    let users: Vec<Value> = found.users.iter().map(shown).collect();
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(users))
}

#[utoipa::path(get, path = "/api/v2/users/{id}", tag = "management", security(("management" = [])),
    params(("id" = String, Path, description = "`email|…` or `sms|…`")),
    responses(
        (status = 200, description = "The user (`read:users`)", body = crate::openapi::ManagementUser),
        (status = 404, description = "No such user (`inexistent_user`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn get_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, MgmtError> {
    caller(&state, &req, &["read:users", "read:users_app_metadata"]).await?;
    let user = state.sesame.ports.users.find_by_id(&UserId(path.into_inner())).await.map_err(store)?;
    let user = user.ok_or_else(MgmtError::not_found)?;
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(shown(&user)))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, MgmtError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) if crate::wire::has_nul(&v) => {
            Err(MgmtError::body("Strings must not contain NUL characters"))
        }
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(MgmtError::body("Expected type object")),
        Err(_) => Err(MgmtError::bad_request("Invalid request payload JSON format", "invalid_body")),
    }
}

fn type_error(field: &str, want: &str, got: &Value) -> MgmtError {
    MgmtError::body_at(format!("Expected type {want} but found type {}", crate::wire::type_name(got)), field)
}

fn bool_field(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, MgmtError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_error(field, "boolean", other)),
    }
}

/// A profile string: `null` goes back to the default; at most 300 characters (Auth0's limit).
fn text_field(map: &Map<String, Value>, field: &str) -> Result<Option<Option<String>>, MgmtError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= 300 && !s.is_empty() => Ok(Some(Some(s.clone()))),
        Some(Value::String(_)) => Err(MgmtError::body_at("String must be 1 to 300 characters", field)),
        Some(other) => Err(type_error(field, "string", other)),
    }
}

/// Metadata: an object of at most 16 KiB serialised (Auth0's limit for `user_metadata`).
fn metadata_field(map: &Map<String, Value>, field: &str) -> Result<Option<MetadataPatch>, MgmtError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Object(o)) => {
            if serde_json::to_vec(o).map_or(usize::MAX, |v| v.len()) > 16 * 1024 {
                return Err(MgmtError::body_at("Metadata must be at most 16 KiB", field));
            }
            Ok(Some(MetadataPatch::from_object(o)))
        }
        Some(other) => Err(type_error(field, "object", other)),
    }
}

fn identifier_field(map: &Map<String, Value>, field: &str) -> Result<Option<Identifier>, MgmtError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(raw)) => identifier_of(field, raw).map(Some).map_err(|m| MgmtError::body_at(m, field)),
        Some(other) => Err(type_error(field, "string", other)),
    }
}

/// The fields a PATCH or POST may carry, as a patch.
fn patch_of(map: &Map<String, Value>) -> Result<UserPatch, MgmtError> {
    let email = identifier_field(map, "email")?;
    let phone = identifier_field(map, "phone_number")?;
    if email.is_some() && phone.is_some() {
        return Err(MgmtError::body("A user has either an email or a phone_number"));
    }
    Ok(UserPatch {
        blocked: bool_field(map, "blocked")?,
        identifier: email.or(phone),
        email_verified: bool_field(map, "email_verified")?,
        phone_verified: bool_field(map, "phone_verified")?,
        name: text_field(map, "name")?,
        nickname: text_field(map, "nickname")?,
        picture: text_field(map, "picture")?,
        user_metadata: metadata_field(map, "user_metadata")?,
        app_metadata: metadata_field(map, "app_metadata")?,
    })
}

const PATCH_FIELDS: &[&str] = &[
    "blocked",
    "email",
    "phone_number",
    "email_verified",
    "phone_verified",
    "name",
    "nickname",
    "picture",
    "user_metadata",
    "app_metadata",
    "connection",
    "client_id",
    "verify_email",
    "verify_phone_number",
];

fn only_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), MgmtError> {
    let extra: Vec<&str> = map.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(MgmtError::body(format!("Additional properties not allowed: {}", extra.join(","))))
    }
}

#[utoipa::path(patch, path = "/api/v2/users/{id}", tag = "management", security(("management" = [])),
    params(("id" = String, Path, description = "`email|…` or `sms|…`")),
    request_body(content = crate::openapi::UserBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed user (`update:users`; `update:users_app_metadata` for metadata only)", body = crate::openapi::ManagementUser),
        (status = 400, description = "A body that does not fit (`invalid_body`)", body = crate::openapi::MgmtErrorBody),
        (status = 404, description = "No such user (`inexistent_user`)", body = crate::openapi::MgmtErrorBody),
        (status = 409, description = "The new address or number has a user already (`auth0_idp_error`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn update_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, MgmtError> {
    let caller = caller(&state, &req, &["update:users", "update:users_app_metadata"]).await?;
    let map = body_object(&body)?;
    only_fields(&map, PATCH_FIELDS)?;
    let metadata_only = map.keys().all(|k| k == "user_metadata" || k == "app_metadata");
    if !caller.has("update:users") && !metadata_only {
        return Err(MgmtError::new(
            StatusCode::FORBIDDEN,
            "Insufficient scope, expected any of: update:users",
            Some("insufficient_scope"),
        ));
    }
    let patch = patch_of(&map)?;
    let user = state.sesame.update_user(&UserId(path.into_inner()), patch, &caller.actor).await?;
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(shown(&user)))
}

#[utoipa::path(post, path = "/api/v2/users", tag = "management", security(("management" = [])),
    request_body(content = crate::openapi::UserBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The new user (`create:users`)", body = crate::openapi::ManagementUser),
        (status = 400, description = "A body that does not fit, or an unknown connection (`invalid_body`, `inexistent_connection`)", body = crate::openapi::MgmtErrorBody),
        (status = 409, description = "The identifier has a user in the connection (`auth0_idp_error`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn create_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, MgmtError> {
    let caller = caller(&state, &req, &["create:users"]).await?;
    let map = body_object(&body)?;
    only_fields(&map, PATCH_FIELDS)?;
    let connection = match map.get("connection") {
        Some(Value::String(c)) if !c.is_empty() => ConnectionName::new(c.clone()),
        Some(other @ (Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_))) => {
            return Err(type_error("connection", "string", other));
        }
        _ => return Err(MgmtError::body("Missing required property: connection")),
    };
    let mut patch = patch_of(&map)?;
    let identifier = patch
        .identifier
        .take()
        .ok_or_else(|| MgmtError::body("Missing required property: email (or phone_number for an sms connection)"))?;
    let user = state.sesame.create_user(NewUser { connection, identifier, patch }, &caller.actor).await?;
    Ok(HttpResponse::Created().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(shown(&user)))
}

#[utoipa::path(delete, path = "/api/v2/users/{id}", tag = "management", security(("management" = [])),
    params(("id" = String, Path, description = "`email|…` or `sms|…`")),
    responses(
        (status = 204, description = "Deleted with everything held about the user, or not there (`delete:users`)"),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn delete_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, MgmtError> {
    let caller = caller(&state, &req, &["delete:users"]).await?;
    // Idempotent, as at Auth0: deleting someone who is not there is not an error.
    match state.sesame.delete_user(&UserId(path.into_inner()), &caller.actor).await {
        Ok(()) | Err(UserAdminError::NotFound) => Ok(HttpResponse::NoContent().finish()),
        Err(e) => Err(e.into()),
    }
}

/// Auth0's tenant-log event type of an audit event.
fn log_type(kind: AuditKind) -> &'static str {
    match kind {
        AuditKind::CodeLinkSent | AuditKind::NotificationSent => "cls",
        AuditKind::NotificationFailed => "fn",
        AuditKind::LoginSucceeded => "s",
        AuditKind::LoginFailed | AuditKind::UserBlocked => "f",
        AuditKind::RateLimited => "limit_wc",
        AuditKind::ManagementApi => "sapi",
        AuditKind::ClientCredentials => "seccft",
    }
}

fn log_json(e: &AuditEvent) -> Value {
    json!({
        "date": e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "type": log_type(e.kind),
        "description": e.detail,
        "client_id": e.client_id,
        "connection": e.connection,
        "ip": e.ip,
        "user_id": e.user_id,
    })
}

#[utoipa::path(get, path = "/api/v2/users/{id}/logs", tag = "management", security(("management" = [])),
    params(
        ("id" = String, Path, description = "`email|…` or `sms|…`"),
        ("page" = Option<u64>, Query, description = "From 0"),
        ("per_page" = Option<u64>, Query, description = "At most 100; default 50"),
        ("include_totals" = Option<bool>, Query, description = "A page object instead of an array")),
    responses(
        (status = 200, description = "The user's events, newest first (`read:logs` or `read:logs_users`)", body = crate::openapi::LogList),
        (status = 400, description = "A query that does not fit (`invalid_query_string`)", body = crate::openapi::MgmtErrorBody),
        (status = 401, description = "No token, or not a valid backend token for this API", body = crate::openapi::MgmtErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = crate::openapi::MgmtErrorBody),
        (status = 429, description = "`[limits] management_per_client` (`too_many_requests`), with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = 503, description = "The store is unavailable, with `Retry-After`", body = crate::openapi::MgmtErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the Authentication API's shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn user_logs(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, MgmtError> {
    caller(&state, &req, &["read:logs", "read:logs_users"]).await?;
    let query = query_map(&req)?;
    only(&query, &["page", "per_page", "include_totals", "sort"])?;
    let page = number(&query, "page", 0, 1_000_000)?;
    let per_page = number(&query, "per_page", 50, 100)?;
    let totals = boolean(&query, "include_totals")?;
    let id = path.into_inner();
    let (events, total) = state.sesame.ports.audit.for_user(&id, page, per_page).await.map_err(store)?;
    let logs: Vec<Value> = events.iter().map(log_json).collect();
    let body = if totals {
        json!({"start": page * per_page, "limit": per_page, "length": logs.len(), "total": total, "logs": logs})
    } else {
        Value::Array(logs)
    };
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(body))
}
