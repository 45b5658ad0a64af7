//! HTTP handlers: the Auth0 Authentication API surface for passwordless.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use sesame_domain::{AuthParams, ConnectionName, GrantType, Identifier, Send};
use sesame_flows::Sesame;
use sesame_flows::client_auth::Credentials;
use sesame_flows::exchange::OtpExchange;
use sesame_flows::start::StartRequest;
use sesame_memory::Mailbox;

use crate::errors::{self, ApiError, Endpoint};
use crate::wire;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub sesame: Sesame,
    /// Present only while the mailbox delivers and the dev mailbox is enabled.
    pub mailbox: Option<Arc<Mailbox>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Magic links show a confirmation page before completing.
    pub confirm_links: bool,
    /// The hosted login page's settings.
    pub hosted: crate::hosted::Hosted,
}

/// The end user's IP: the peer, or what trusted proxies forwarded; `auth0-forwarded-for` only
/// from an authenticated confidential client marked `trust_forwarded_for` (a backend calling for
/// its user: Auth0's "Trust Token Endpoint IP Header").
fn end_user_ip(state: &AppState, req: &HttpRequest, client: &sesame_domain::Client) -> Option<String> {
    if client.is_confidential()
        && client.trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("auth0-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    {
        return Some(wire::bucket(ip.to_canonical()));
    }
    wire::client_ip(req, &state.trusted_proxies)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/passwordless/start", web::post().to(passwordless_start))
        .route("/oauth/token", web::post().to(oauth_token))
        .route("/oauth/revoke", web::post().to(oauth_revoke))
        .route("/v2/logout", web::get().to(logout))
        .route("/oidc/logout", web::get().to(oidc_logout))
        .route("/userinfo", web::get().to(userinfo))
        .route("/userinfo", web::post().to(userinfo))
        .route("/.well-known/openid-configuration", web::get().to(openid_configuration))
        .route("/.well-known/oauth-authorization-server", web::get().to(oauth_authorization_server))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/dev/mailbox", web::get().to(dev_mailbox))
        .configure(crate::probes::configure)
        .configure(crate::openapi::configure)
        .configure(crate::links::configure)
        .configure(crate::hosted::configure)
        .configure(crate::management::configure);
}

/// The top-level properties `/passwordless/start` accepts (spec §4.1); anything else is refused.
const START_FIELDS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "connection",
    "email",
    "phone_number",
    "send",
    "authParams",
    "captcha",
];

#[utoipa::path(post, path = "/passwordless/start", tag = "passwordless",
    request_body(content((crate::openapi::StartBody = "application/json", examples(("an email code" = (summary = "an email code", value = json!({"client_id": "sesame-dev", "connection": "email", "email": "jane@example.com", "send": "code"}))), ("an unknown connection" = (summary = "an unknown connection", value = json!({"client_id": "sesame-dev", "connection": "nope", "email": "jane@example.com"}))), ("a wrong client secret" = (summary = "a wrong client secret", value = json!({"client_id": "st-web", "client_secret": "not-the-secret-0123456789", "connection": "email", "email": "jane@example.com", "send": "code"}))), ("no client secret" = (summary = "no client secret", value = json!({"client_id": "st-web", "connection": "email", "email": "jane@example.com", "send": "code"}))))), (crate::openapi::StartBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The code or link is on its way", body = crate::openapi::Started),
        (status = 400, description = "The request is malformed or names an unknown connection, client or parameter", body = crate::openapi::ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Refused: a wrong or dead code, a missing client secret, a grant the client may not use", body = crate::openapi::ErrorBody),
        (status = 429, description = "A rate limit refused it (`too_many_requests`, `too_many_attempts`), with `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn passwordless_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let map = wire::object(&req, &body)
        .ok_or_else(|| ApiError::bad_request("bad.request", "The request body must be a JSON object"))?;
    let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !START_FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(
            "bad.request",
            format!("the following properties are not allowed: {}", unknown.join(",")),
        ));
    }
    let basic = wire::basic_auth(&req)?;
    let client_id = wire::string(&map, "client_id", "bad.client_id")?;
    if client_id.is_none() && basic.is_none() {
        return Err(ApiError::bad_request("bad.client_id", "Missing required property: client_id"));
    }
    let connection = wire::string(&map, "connection", "bad.connection")?
        .ok_or_else(|| ApiError::bad_request("bad.connection", "Missing required property: connection"))?;
    let send = wire::string(&map, "send", "bad.send")?
        .map(|s| Send::parse(&s).map_err(|e| ApiError::bad_request("bad.send", format!("error in send - {e}"))))
        .transpose()?;
    let auth_params = match map.get("authParams") {
        None | Some(Value::Null) => AuthParams::default(),
        // The hosted login page's own keys: only its starts may carry them (a link that names
        // another browser's login would approve that browser).
        Some(Value::Object(o)) if o.keys().any(|k| k.starts_with("sesame_")) => {
            return Err(ApiError::bad_request(
                "bad.authParams",
                "error in authParams - keys starting with sesame_ are reserved",
            ));
        }
        Some(Value::Object(o)) => AuthParams(o.clone()),
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad.authParams",
                format!("error in authParams - invalid type: {} (expected object)", wire::type_name(other)),
            ));
        }
    };
    let email = wire::string(&map, "email", "bad.email")?;
    let phone_number = wire::string(&map, "phone_number", "bad.phone_number")?;
    let creds = Credentials {
        client_id,
        client_secret: wire::string(&map, "client_secret", "bad.request")?,
        basic,
        client_assertion: wire::string(&map, "client_assertion", "bad.request")?,
        client_assertion_type: wire::string(&map, "client_assertion_type", "bad.request")?,
    };
    let sesame = &state.sesame;
    let client = sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Start))?;
    let ip = end_user_ip(&state, &req, &client);
    let outcome = sesame
        .start(StartRequest {
            client,
            connection: ConnectionName::new(connection),
            email,
            phone_number,
            send,
            auth_params,
            language: wire::request_language(&req),
            ip,
        })
        .await;
    let limit = outcome.limit;
    let started = outcome.result.map_err(|e| errors::start(e).with_limit(limit.as_ref()))?;
    let body = match &started.identifier {
        Identifier::Email(e) => {
            json!({"_id": started.id, "email": e.as_str(), "email_verified": false})
        }
        Identifier::Phone(p) => json!({
            "_id": started.id,
            "phone_number": p.e164(),
            "phone_verified": false,
            "request_language": started.request_language,
        }),
    };
    let mut resp = HttpResponse::Ok();
    errors::limit_headers(&mut resp, limit.as_ref());
    Ok(resp.json(body))
}

#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content((crate::openapi::TokenBody = "application/json", examples(("a wrong code" = (summary = "a wrong code", value = json!({"grant_type": "http://auth0.com/oauth/grant-type/passwordless/otp", "client_id": "sesame-dev", "realm": "email", "username": "jane@example.com", "otp": "000000", "scope": "openid"}))), ("an unknown client" = (summary = "an unknown client", value = json!({"grant_type": "http://auth0.com/oauth/grant-type/passwordless/otp", "client_id": "nobody", "realm": "email", "username": "jane@example.com", "otp": "123456"}))))), (crate::openapi::TokenBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Tokens", body = crate::openapi::Tokens),
        (status = 400, description = "The request is malformed or names an unknown connection, client or parameter", body = crate::openapi::ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Refused: a wrong or dead code, a missing client secret, a grant the client may not use", body = crate::openapi::ErrorBody),
        (status = 429, description = "A rate limit refused it (`too_many_requests`, `too_many_attempts`), with `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn oauth_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let map = token_endpoint_body(&req, &body)?;
    let field = |name: &str| wire::string(&map, name, "invalid_request");
    let required = |name: &str| {
        field(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request("invalid_request", format!("Missing required parameter: {name}")))
    };
    let grant_type = required("grant_type")?;
    let basic = wire::basic_auth(&req)?;
    let creds = Credentials {
        client_id: field("client_id")?,
        client_secret: field("client_secret")?,
        basic,
        client_assertion: field("client_assertion")?,
        client_assertion_type: field("client_assertion_type")?,
    };
    let sesame = &state.sesame;
    match GrantType::parse(&grant_type) {
        Some(GrantType::PasswordlessOtp) => {
            let client =
                sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Token))?;
            let ip = end_user_ip(&state, &req, &client);
            let exchange = OtpExchange {
                client,
                realm: required("realm")?,
                username: required("username")?,
                otp: required("otp")?,
                scope: field("scope")?,
                audience: field("audience")?.or(field("resource")?).filter(|a| !a.is_empty()),
                ip,
            };
            let outcome = sesame.exchange_otp(exchange).await;
            let limit = outcome.limit;
            let tokens = outcome.result.map_err(|e| errors::exchange(e).with_limit(limit.as_ref()))?;
            let mut resp = HttpResponse::Ok();
            errors::limit_headers(&mut resp, limit.as_ref());
            Ok(resp
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .insert_header((actix_web::http::header::PRAGMA, "no-cache"))
                .json(tokens))
        }
        Some(GrantType::AuthorizationCode) => {
            let client =
                sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Token))?;
            let code = required("code")?;
            let tokens = sesame
                .exchange_code(&client, &code, field("redirect_uri")?.as_deref(), field("code_verifier")?.as_deref())
                .await
                .map_err(errors::grant)?;
            Ok(token_response(&tokens))
        }
        Some(GrantType::RefreshToken) => {
            let client =
                sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Token))?;
            let refresh_token = required("refresh_token")?;
            let tokens = sesame.refresh(&client, &refresh_token).await.map_err(errors::grant)?;
            Ok(token_response(&tokens))
        }
        Some(GrantType::ClientCredentials) => {
            let client =
                sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Token))?;
            let audience = field("audience")?.or(field("resource")?);
            let tokens = sesame
                .client_credentials(&client, audience.as_deref(), field("scope")?.as_deref())
                .await
                .map_err(errors::grant)?;
            Ok(token_response(&tokens))
        }
        _ => Err(ApiError::bad_request("unsupported_grant_type", format!("Unsupported grant type: {grant_type}"))),
    }
}

/// `POST /oauth/revoke` (RFC 7009, Auth0's shape): revokes a refresh token and every token
/// rotated from it. An unknown token, or another client's, is answered 200 as well and
/// changes nothing: the answer tells nothing about tokens.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content((crate::openapi::RevokeBody = "application/json"), (crate::openapi::RevokeBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (the answer is the same)"),
        (status = 400, description = "No token, or a malformed request (`invalid_request`)", body = crate::openapi::ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "A confidential client sent no credentials (`unauthorized_client`)", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn oauth_revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let map = token_endpoint_body(&req, &body)?;
    let field = |name: &str| wire::string(&map, name, "invalid_request");
    let creds = token_endpoint_credentials(&req, &map)?;
    // The client first (RFC 7009 §2.1): a stranger learns nothing about tokens.
    let sesame = &state.sesame;
    let client = sesame.authenticate_client(&creds).await.map_err(|e| errors::client_auth(e, Endpoint::Token))?;
    let token = field("token")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_request", "Missing required parameter: token"))?;
    sesame.revoke_refresh_token(&client, &token).await.map_err(errors::store)?;
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).finish())
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct LogoutQuery {
    client_id: Option<String>,
    #[serde(rename = "returnTo")]
    return_to: Option<String>,
}

/// `GET /v2/logout`: ends the hosted-login session of this browser (the cookie is cleared on
/// every answer), then goes back to `returnTo`, which must be one of the client's
/// `allowed_logout_urls` (exact match); without a `returnTo`, a plain page says the user is
/// logged out.
#[utoipa::path(get, path = "/v2/logout", tag = "oauth",
    params(("client_id" = Option<String>, Query), ("returnTo" = Option<String>, Query, description = "One of the client's `allowed_logout_urls`")),
    responses(
        (status = 200, description = "Logged out (no `returnTo`)", content_type = "text/plain"),
        (status = 302, description = "Back to `returnTo`", headers(("location" = String))),
        (status = 400, description = "`returnTo` is not an allowed logout URL of the client (`invalid_request`)", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn logout(state: web::Data<AppState>, query: web::Query<LogoutQuery>) -> HttpResponse {
    let q = query.into_inner();
    let result = logout_to(&state, q.client_id, q.return_to, None).await;
    logged_out(&state, result)
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct OidcLogoutQuery {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
}

/// `GET /oidc/logout` (OpenID Connect RP-Initiated Logout 1.0): as `/v2/logout`; the client is
/// `client_id`, else the audience of a valid `id_token_hint`; `post_logout_redirect_uri` must be
/// one of its `allowed_logout_urls`, and gets `state` back.
#[utoipa::path(get, path = "/oidc/logout", tag = "oauth",
    params(("id_token_hint" = Option<String>, Query), ("post_logout_redirect_uri" = Option<String>, Query, description = "One of the client's `allowed_logout_urls`"), ("client_id" = Option<String>, Query), ("state" = Option<String>, Query)),
    responses(
        (status = 200, description = "Logged out (no `post_logout_redirect_uri`)", content_type = "text/plain"),
        (status = 302, description = "Back to `post_logout_redirect_uri`", headers(("location" = String))),
        (status = 400, description = "`post_logout_redirect_uri` is not an allowed logout URL of the client (`invalid_request`)", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn oidc_logout(state: web::Data<AppState>, query: web::Query<OidcLogoutQuery>) -> HttpResponse {
    let q = query.into_inner();
    let mut client_id = q.client_id.filter(|c| !c.is_empty());
    if client_id.is_none()
        && let Some(hint) = q.id_token_hint.as_deref().filter(|h| !h.is_empty())
        && let Ok(claims) = state.sesame.ports.tokens.verify(hint).await
    {
        client_id = match &claims["aud"] {
            Value::String(a) => Some(a.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
    }
    let result = logout_to(&state, client_id, q.post_logout_redirect_uri, q.state).await;
    logged_out(&state, result)
}

/// Any logout's answer, with the session cookie cleared.
fn logged_out(state: &AppState, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    let mut resp = result.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
    for name in [crate::hosted::SESSION_COOKIE, crate::hosted::LOGIN_COOKIE] {
        let clear = crate::hosted::clear_cookie(&state.hosted, name);
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&clear) {
            resp.headers_mut().append(actix_web::http::header::SET_COOKIE, v);
        }
    }
    resp
}

async fn logout_to(
    state: &AppState,
    client_id: Option<String>,
    return_to: Option<String>,
    rp_state: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(return_to) = return_to.filter(|r| !r.is_empty()) else {
        return Ok(HttpResponse::Ok()
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body("OK"));
    };
    let refused = || {
        ApiError::bad_request(
            "invalid_request",
            "The returnTo URL is not one of the application's allowed logout URLs (and a client_id is needed to check it).",
        )
    };
    let client_id = client_id.filter(|c| !c.is_empty()).ok_or_else(refused)?;
    let client = state
        .sesame
        .ports
        .clients
        .find(&sesame_domain::ClientId::new(client_id))
        .await
        .map_err(errors::store)?
        .ok_or_else(refused)?;
    if !client.logout_url_allowed(&return_to) {
        return Err(refused());
    }
    let location = match rp_state.filter(|s| !s.is_empty()) {
        Some(s) => {
            let sep = if return_to.contains('?') { '&' } else { '?' };
            let enc: String = url_encode(&s);
            format!("{return_to}{sep}state={enc}")
        }
        None => return_to,
    };
    Ok(HttpResponse::Found()
        .insert_header((actix_web::http::header::LOCATION, location))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish())
}

fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The body of `/oauth/token` and `/oauth/revoke`: a JSON object or a form.
fn token_endpoint_body(req: &HttpRequest, body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    wire::object(req, body).ok_or_else(|| {
        ApiError::bad_request("invalid_request", "The request body must be JSON or application/x-www-form-urlencoded")
    })
}

/// The client authentication of `/oauth/revoke`, as `/oauth/token` reads it.
fn token_endpoint_credentials(
    req: &HttpRequest,
    map: &serde_json::Map<String, Value>,
) -> Result<Credentials, ApiError> {
    let field = |name: &str| wire::string(map, name, "invalid_request");
    Ok(Credentials {
        client_id: field("client_id")?,
        client_secret: field("client_secret")?,
        basic: wire::basic_auth(req)?,
        client_assertion: field("client_assertion")?,
        client_assertion_type: field("client_assertion_type")?,
    })
}

fn token_response(tokens: &sesame_flows::tokens::TokenSet) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header((actix_web::http::header::PRAGMA, "no-cache"))
        .json(tokens)
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

#[utoipa::path(method(get, post), path = "/userinfo", tag = "oauth",
    params(("authorization" = Option<String>, Header, description = "Bearer access token")),
    responses(
        (status = 200, description = "The user's claims", body = Object),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let unauthorized = || {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "The access token is missing, invalid or expired.")
            .with_header(actix_web::http::header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
    };
    let token = bearer(&req).ok_or_else(unauthorized)?;
    let sesame = &state.sesame;
    let now = sesame.ports.clock.now();
    let grant = if token.matches('.').count() == 2 {
        // A JWT access token: it must be ours, unexpired, and meant for /userinfo.
        let claims = sesame.ports.tokens.verify(&token).await.map_err(|_| unauthorized())?;
        let userinfo_aud = format!("{}userinfo", sesame.settings.issuer);
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == userinfo_aud,
            Value::Array(a) => a.iter().any(|v| v.as_str() == Some(userinfo_aud.as_str())),
            _ => false,
        };
        if claims["iss"].as_str() != Some(sesame.settings.issuer.as_str()) || !aud_ok {
            return Err(unauthorized());
        }
        let sub = claims["sub"].as_str().unwrap_or_default().to_owned();
        (sesame_domain::UserId(sub), claims["scope"].as_str().unwrap_or_default().to_owned())
    } else {
        let hash = sesame.secrets().token_hash("access_token", &token);
        let found = sesame.ports.grants.find_opaque(&hash, now).await.map_err(|e| match e {
            sesame_ports::StoreError::Unavailable(c) => ApiError::unavailable(&c),
            other => ApiError::internal(&anyhow::Error::new(other)),
        })?;
        let found = found.ok_or_else(unauthorized)?;
        (found.user_id, found.scope)
    };
    let user = sesame.ports.users.find_by_id(&grant.0).await.map_err(errors::store)?;
    let user = user.filter(|u| !u.blocked).ok_or_else(unauthorized)?;
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), json!(user.id.as_str()));
    body.extend(sesame_flows::tokens::profile_claims(&user, &grant.1));
    body.insert("user_metadata".into(), Value::Object(user.user_metadata.clone()));
    body.insert("app_metadata".into(), Value::Object(user.app_metadata.clone()));
    Ok(HttpResponse::Ok().json(Value::Object(body)))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID Connect discovery", body = Object)))]
pub(crate) async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    let iss = &state.sesame.settings.issuer;
    HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=300")).json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}authorize"),
        "token_endpoint": format!("{iss}oauth/token"),
        "userinfo_endpoint": format!("{iss}userinfo"),
        "jwks_uri": format!("{iss}.well-known/jwks.json"),
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "response_types_supported": ["code", "token", "id_token", "token id_token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "revocation_endpoint": format!("{iss}oauth/revoke"),
        "end_session_endpoint": format!("{iss}oidc/logout"),
        "prompt_values_supported": ["none", "login"],
        "ui_locales_supported": ["en", "fr", "de", "es"],
        "claims_parameter_supported": false,
        "grant_types_supported": [GrantType::PASSWORDLESS_OTP, "authorization_code", "refresh_token", "implicit", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "PS256", "ES256"],
        "claims_supported": ["aud", "at_hash", "azp", "email", "email_verified", "exp", "iat", "iss", "name", "nickname", "nonce", "phone_number", "phone_verified", "picture", "sid", "sub", "updated_at"],
        "request_uri_parameter_supported": false,
        "request_parameter_supported": false,
    }))
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata: the OpenID Connect discovery document", body = Object)))]
pub(crate) async fn oauth_authorization_server(state: web::Data<AppState>) -> HttpResponse {
    openid_configuration(state).await
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "The signing keys", body = Object)))]
pub(crate) async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.sesame.ports.tokens.jwks().await.map_err(|e| ApiError::unavailable(&anyhow::Error::new(e)))?;
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=300")).json(keys))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct MailboxQuery {
    to: Option<String>,
}

/// The first whitespace-separated token that is a code (4–40 digits), and the first link.
fn code_and_link(text: &str) -> (Option<String>, Option<String>) {
    let tokens = || text.split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"');
    let code = tokens()
        .map(|t| t.trim_end_matches(['.', ',', ':']))
        .find(|t| (4..=40).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned);
    let link = tokens().find(|t| t.starts_with("http://") || t.starts_with("https://")).map(str::to_owned);
    (code, link)
}

#[utoipa::path(get, path = "/dev/mailbox", tag = "development",
    params(("to" = Option<String>, Query, description = "Only messages to this address or number")),
    responses(
        (status = 200, description = "What the development mailbox holds, newest first (only while it delivers): JSON, or a page showing each message as its recipient sees it when the browser asks for HTML", content((Vec<Object> = "application/json"), ("text/html"))),
        (status = 404, description = "Not served (the development mailbox is off)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn dev_mailbox(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<MailboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let mailbox =
        state.mailbox.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found"))?;
    if wants_html(&req) {
        return Ok(mailbox_page(&mailbox.list(query.to.as_deref())));
    }
    let entries: Vec<Value> = mailbox
        .list(query.to.as_deref())
        .into_iter()
        .map(|e| {
            let (code, link) = code_and_link(&e.text);
            json!({
                "to": e.to,
                "channel": e.channel,
                "subject": e.subject,
                "text": e.text,
                "code": code,
                "link": link,
                "sent_at": e.sent_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::CACHE_CONTROL, "no-store")).json(entries))
}

/// Whether a browser asked (HTML before JSON in `Accept`); API clients get JSON.
fn wants_html(req: &HttpRequest) -> bool {
    let accept = req.headers().get(actix_web::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let html = accept.find("text/html");
    let json = accept.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The dev mailbox as a page: each message as its recipient would see it (the HTML body of an
/// email, the text of an SMS), newest first.
fn mailbox_page(entries: &[sesame_memory::MailboxEntry]) -> HttpResponse {
    use sesame_flows::templates::escape_html as escape;
    let nonce = sesame_flows::crypto::random_b64(&sesame_flows::OsRandom, 18);
    let mut items = String::new();
    for e in entries {
        let when = e.sent_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let body = match &e.html {
            // Our own templates' output: every variable in it is escaped already.
            Some(html) => format!("<div class=\"html\">{html}</div>"),
            None => format!("<pre>{}</pre>", escape(&e.text)),
        };
        items.push_str(&format!(
            "<article><header><strong>{to}</strong> · {channel} · <time>{when}</time>{subject}</header>{body}</article>",
            to = escape(&e.to),
            channel = escape(&format!("{:?}", e.channel).to_lowercase()),
            when = escape(&when),
            subject = e.subject.as_ref().map(|s| format!("<h2>{}</h2>", escape(s))).unwrap_or_default(),
        ));
    }
    if entries.is_empty() {
        items.push_str("<p>No messages yet.</p>");
    }
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Dev mailbox</title><style nonce=\"{nonce}\">body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}article{{border:1px solid #d6d3d1;border-radius:.5rem;padding:1rem;margin:1rem 0}}header{{color:#57534e;font-size:.9rem}}h2{{font-size:1.1rem;color:#1c1917}}pre{{white-space:pre-wrap}}</style></head><body><h1>Dev mailbox</h1><p>What Sesame sent while the development mailbox delivers (never in production). JSON: the same URL with <code>Accept: application/json</code>.</p>{items}</body></html>"
    );
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header((
            "Content-Security-Policy",
            format!("default-src 'none'; style-src 'nonce-{nonce}'; img-src https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        ))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(html)
}

#[cfg(test)]
mod tests {
    use super::code_and_link;

    #[test]
    fn mailbox_finds_code_and_link_in_the_default_texts() {
        let (code, link) = code_and_link(
            "Open this link:\n\nhttps://a.example/passwordless/verify_redirect?x=1\n\nOr enter this code: 012345\n",
        );
        assert_eq!(code.as_deref(), Some("012345"));
        assert_eq!(link.as_deref(), Some("https://a.example/passwordless/verify_redirect?x=1"));
        assert_eq!(code_and_link("Your verification code is: 9876").0.as_deref(), Some("9876"));
    }
}
