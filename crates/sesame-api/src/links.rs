//! `GET|POST /passwordless/verify_redirect` (the magic link) and the legacy
//! `POST /passwordless/verify` (spec §6.1, §7).
//!
//! By default a GET only shows a confirmation page: mail scanners that prefetch links burn
//! nothing, and the secret leaves the URL (POST) before anything else happens. With
//! `magic_link.confirm = false` the GET completes at once, as Auth0 does.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;
use sesame_domain::ClientId;
use sesame_flows::authorize::{
    AuthorizationResponse, AuthorizeError, AuthorizeParams, LinkCompletion, ResponseMode, check_authorization,
};
use sesame_flows::crypto::random_b64;
use sesame_flows::exchange::OtpExchange;

use crate::errors::{self, ApiError};
use crate::routes::AppState;
use crate::wire;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/passwordless/verify_redirect", web::get().to(open_link))
        .route("/passwordless/verify_redirect", web::post().to(confirm_link))
        .route("/passwordless/verify", web::post().to(legacy_verify))
        .route("/co/authenticate", web::post().to(co_authenticate))
        .route("/authorize", web::get().to(authorize));
}

use sesame_flows::templates::escape_html as escape;

fn origin_of(uri: &str) -> String {
    crate::hosted::csp_source(uri).unwrap_or_else(|| "'none'".into())
}

/// A page of ours: no third-party anything, no referrer, never cached, never framed.
fn page(status: StatusCode, csp: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Sign in</title><style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}}button{{font-size:1.1rem;padding:.7rem 1.4rem;border:0;border-radius:.4rem;background:#1d4ed8;color:#fff;cursor:pointer}}</style></head><body>{body}</body></html>"
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", csp))
        .body(html)
}

pub(crate) fn error_page(message: &str) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        &format!("<h1>This link cannot be used</h1><p>{}</p>", escape(message)),
    )
}

/// A dependency is down: 503 with `Retry-After`, so a browser (or a monitor) knows to come back.
pub(crate) fn unavailable_page() -> HttpResponse {
    let mut resp = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        "<h1>Please try again in a moment</h1><p>The service is temporarily unavailable. Please try again later.</p>",
    );
    resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// Sends the browser on: query or fragment redirect, or an auto-posting form.
pub(crate) fn respond(resp: &AuthorizationResponse) -> HttpResponse {
    let encoded = resp
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, COMPONENT), utf8_percent_encode(v, COMPONENT)))
        .collect::<Vec<_>>()
        .join("&");
    let uri = &resp.redirect_uri;
    let location = match resp.mode {
        ResponseMode::Query => format!("{uri}{}{encoded}", if uri.contains('?') { '&' } else { '?' }),
        ResponseMode::Fragment => format!("{uri}#{encoded}"),
        ResponseMode::FormPost => {
            let nonce = random_b64(&sesame_flows::OsRandom, 16);
            let fields: String = resp
                .params
                .iter()
                .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
                .collect();
            let csp = format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
                origin_of(uri)
            );
            return page(
                StatusCode::OK,
                &csp,
                &format!(
                    "<form method=\"post\" action=\"{}\">{fields}<noscript><button type=\"submit\">Continue</button></noscript></form><script nonce=\"{nonce}\">document.forms[0].submit()</script>",
                    escape(uri)
                ),
            );
        }
    };
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .finish()
}

fn params_of(map: &HashMap<String, String>) -> AuthorizeParams {
    AuthorizeParams::from_lookup(|k| map.get(k).cloned().filter(|v| !v.is_empty()))
}

/// Checks the request enough to know where errors may go. `Err` is the page to show.
pub(crate) async fn prepare(
    state: &AppState,
    map: &HashMap<String, String>,
) -> Result<(sesame_domain::Client, sesame_flows::authorize::Authorization), HttpResponse> {
    let Some(client_id) = map.get("client_id") else {
        return Err(error_page("The link is incomplete (client_id is missing)."));
    };
    let client = match state.sesame.ports.clients.find(&ClientId::new(client_id.clone())).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(error_page("The link names an unknown application.")),
        Err(e) => {
            tracing::warn!(error = ?e, "client lookup failed");
            return Err(unavailable_page());
        }
    };
    match check_authorization(&client, &state.sesame.settings.apis, &params_of(map)) {
        Ok(auth) => Ok((client, auth)),
        Err(AuthorizeError::UntrustedRedirect) => {
            Err(error_page("The link's redirect_uri is not a registered callback of the application."))
        }
        Err(AuthorizeError::Redirect(r, auth)) => Err(respond(&AuthorizationResponse::error(&auth, &r))),
        Err(AuthorizeError::Unavailable(_) | AuthorizeError::Unexpected(_)) => Err(unavailable_page()),
    }
}

async fn complete(state: &AppState, req: &HttpRequest, map: HashMap<String, String>) -> HttpResponse {
    let (client, auth) = match prepare(state, &map).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let completion = LinkCompletion {
        client,
        connection: map.get("connection").cloned().unwrap_or_else(|| "email".into()),
        email: map.get("email").cloned(),
        phone_number: map.get("phone_number").cloned(),
        verification_code: map.get("verification_code").cloned().unwrap_or_default(),
        authorization: auth,
        ip: wire::client_ip(req, &state.trusted_proxies),
    };
    match state.sesame.complete_link(completion).await {
        Ok(resp) => respond(&resp),
        Err(AuthorizeError::Redirect(r, auth)) => respond(&AuthorizationResponse::error(&auth, &r)),
        Err(AuthorizeError::UntrustedRedirect) => {
            error_page("The link's redirect_uri is not a registered callback of the application.")
        }
        Err(AuthorizeError::Unavailable(e) | AuthorizeError::Unexpected(e)) => {
            tracing::warn!(error = ?e, "magic link completion failed");
            unavailable_page()
        }
    }
}

#[utoipa::path(get, path = "/passwordless/verify_redirect", tag = "passwordless",
    params(("verification_code" = Option<String>, Query), ("connection" = Option<String>, Query), ("client_id" = Option<String>, Query), ("email" = Option<String>, Query), ("phone_number" = Option<String>, Query)),
    responses(
        (status = 200, description = "The confirmation page (or, with confirmation off, the completed response page)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "An error page: the link is wrong, used or expired, or the request cannot be completed", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = 503, description = "A dependency is unavailable", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn open_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let map = query.into_inner();
    if crate::hosted::is_hosted_link(&map) {
        return crate::hosted::open_link(&state, &req, map).await;
    }
    if !state.confirm_links {
        return complete(&state, &req, map).await;
    }
    // Nothing is consumed on GET: show where the login goes and ask for a click.
    let (client, auth) = match prepare(&state, &map).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let fields: String = map
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
        .collect();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        origin_of(&auth.redirect_uri)
    );
    page(
        StatusCode::OK,
        &csp,
        &format!(
            "<h1>Sign in to {}</h1><p>Continue to sign in on this device.</p><form method=\"post\" action=\"/passwordless/verify_redirect\">{fields}<button type=\"submit\" id=\"confirm\">Sign in</button></form>",
            escape(&client.name)
        ),
    )
}

#[utoipa::path(post, path = "/passwordless/verify_redirect", tag = "passwordless",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "The link's query, as the confirmation page posts it"),
    responses(
        (status = 200, description = "A page that posts the response (`response_mode=form_post`)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "An error page: the link is wrong, used or expired, or the request cannot be completed", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = 503, description = "A dependency is unavailable", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn confirm_link(state: web::Data<AppState>, req: HttpRequest, form: web::Bytes) -> HttpResponse {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&form) else {
        return error_page("The form could not be read.");
    };
    let map: HashMap<String, String> = pairs.into_iter().collect();
    if crate::hosted::is_hosted_link(&map) {
        return crate::hosted::confirm_link(&state, &req, map).await;
    }
    complete(&state, &req, map).await
}

/// auth0.js: `{connection, verification_code, email|phone_number, client_id}`; checks the code
/// without consuming it.
#[utoipa::path(post, path = "/passwordless/verify", tag = "passwordless",
    request_body(content((crate::openapi::VerifyBody = "application/json", examples(("a wrong code" = (summary = "a wrong code", value = json!({"client_id": "sesame-dev", "connection": "email", "email": "jane@example.com", "verification_code": "000000"}))))), (crate::openapi::VerifyBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The code is right (not consumed)", body = Object),
        (status = 400, description = "The request is malformed or names an unknown connection, client or parameter", body = crate::openapi::ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Refused: a wrong or dead code, a missing client secret, a grant the client may not use", body = crate::openapi::ErrorBody),
        (status = 429, description = "A rate limit refused it (`too_many_requests`, `too_many_attempts`), with `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn legacy_verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let map = wire::object(&req, &body)
        .ok_or_else(|| ApiError::bad_request("bad.request", "The request body must be a JSON object"))?;
    let field = |name: &str, error: &'static str| wire::string(&map, name, error);
    let client_id = field("client_id", "bad.client_id")?
        .ok_or_else(|| ApiError::bad_request("bad.client_id", "Missing required property: client_id"))?;
    let connection = field("connection", "bad.connection")?
        .ok_or_else(|| ApiError::bad_request("bad.connection", "Missing required property: connection"))?;
    let code = field("verification_code", "bad.verification_code")?.ok_or_else(|| {
        ApiError::bad_request("bad.verification_code", "Missing required property: verification_code")
    })?;
    let username = field("email", "bad.email")?.or(field("phone_number", "bad.phone_number")?).unwrap_or_default();
    let sesame = &state.sesame;
    let client = sesame
        .ports
        .clients
        .find(&ClientId::new(client_id))
        .await
        .map_err(errors::store)?
        .ok_or_else(|| ApiError::bad_request("bad.client_id", "Unknown client"))?;
    let ip = wire::client_ip(&req, &state.trusted_proxies);
    let outcome = sesame
        .verify_otp(OtpExchange { client, realm: connection, username, otp: code, scope: None, audience: None, ip })
        .await;
    let limit = outcome.limit;
    match outcome.result {
        Ok(()) => {
            let mut resp = HttpResponse::Ok();
            errors::limit_headers(&mut resp, limit.as_ref());
            Ok(resp.json(json!({})))
        }
        Err(e) => Err(errors::legacy_verify(e).with_limit(limit.as_ref())),
    }
}

/// auth0.js `passwordlessLogin` from a page on another origin:
/// `{client_id, credential_type, realm, username, otp}` → `{login_ticket, co_verifier, co_id}`.
#[utoipa::path(post, path = "/co/authenticate", tag = "passwordless",
    request_body(content((crate::openapi::CoAuthenticateBody = "application/json", examples(("a wrong code" = (summary = "a wrong code", value = json!({"client_id": "sesame-dev", "credential_type": "http://auth0.com/oauth/grant-type/passwordless/otp", "realm": "email", "username": "jane@example.com", "otp": "000000"}))), ("an unknown client" = (summary = "an unknown client", value = json!({"client_id": "nobody", "credential_type": "http://auth0.com/oauth/grant-type/passwordless/otp", "realm": "email", "username": "jane@example.com", "otp": "000000"}))))), (crate::openapi::CoAuthenticateBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "A login ticket for /authorize", body = Object),
        (status = 400, description = "The request is malformed or names an unknown connection, client or parameter", body = crate::openapi::ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Refused: a wrong or dead code, a missing client secret, a grant the client may not use", body = crate::openapi::ErrorBody),
        (status = 429, description = "A rate limit refused it (`too_many_requests`, `too_many_attempts`), with `Retry-After`", body = crate::openapi::ErrorBody),
        (status = 503, description = "A dependency is unavailable (`temporarily_unavailable`)", body = crate::openapi::ErrorBody),
        (status = "4XX", description = "What the HTTP layer refuses by itself (404, 405, 413, 415), in the same shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn co_authenticate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let map = wire::object(&req, &body)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "The request body must be a JSON object"))?;
    let field = |name: &str| wire::string(&map, name, "invalid_request");
    let required = |name: &str| {
        field(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request("invalid_request", format!("Missing required parameter: {name}")))
    };
    let client_id = required("client_id")?;
    let credential_type = required("credential_type")?;
    if credential_type != sesame_domain::GrantType::PASSWORDLESS_OTP {
        return Err(ApiError::bad_request(
            "unsupported_credential_type",
            format!("Unsupported credential type: {credential_type}"),
        ));
    }
    let sesame = &state.sesame;
    let client = sesame
        .ports
        .clients
        .find(&ClientId::new(client_id))
        .await
        .map_err(errors::store)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Unknown client"))?;
    let exchange = OtpExchange {
        ip: wire::client_ip(&req, &state.trusted_proxies),
        client,
        realm: required("realm")?,
        username: required("username")?,
        otp: required("otp")?,
        scope: None,
        audience: None,
    };
    let outcome = sesame.cross_origin_authenticate(exchange).await;
    let limit = outcome.limit;
    match outcome.result {
        Ok(ticket) => {
            let random = &*sesame.ports.random;
            let mut resp = HttpResponse::Ok();
            errors::limit_headers(&mut resp, limit.as_ref());
            // auth0.js keeps co_verifier/co_id for its cross-origin fallback; the ticket alone
            // (single use, 60 s, bound to the client) is what /authorize checks.
            Ok(resp.insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
                "login_ticket": ticket,
                "co_verifier": random_b64(random, 24),
                "co_id": random_b64(random, 12),
            })))
        }
        Err(e) => {
            let mut err = errors::exchange(e);
            // auth0.js reports a wrong code from here as access_denied (tenant log `fcoa`).
            if err.error == "invalid_grant" {
                err.error = "access_denied";
            }
            Err(err.with_limit(limit.as_ref()))
        }
    }
}

/// `GET /authorize`: with a `login_ticket` from `/co/authenticate` (auth0.js), the response at
/// once; without one, the hosted login page (or, for a signed-in browser, the response).
#[utoipa::path(get, path = "/authorize", tag = "oauth",
    params(("client_id" = Option<String>, Query), ("response_type" = Option<String>, Query), ("redirect_uri" = Option<String>, Query), ("login_ticket" = Option<String>, Query), ("state" = Option<String>, Query), ("nonce" = Option<String>, Query), ("scope" = Option<String>, Query), ("code_challenge" = Option<String>, Query), ("code_challenge_method" = Option<String>, Query), ("response_mode" = Option<String>, Query), ("prompt" = Option<String>, Query, description = "`none` (answer from the session or `login_required`) or `login` (always ask)"), ("login_hint" = Option<String>, Query), ("ui_locales" = Option<String>, Query), ("max_age" = Option<String>, Query)),
    responses(
        (status = 200, description = "The hosted login page, or a page that posts the response (`response_mode=form_post`)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "An error page: the link is wrong, used or expired, or the request cannot be completed", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = 503, description = "A dependency is unavailable", content(("text/html"), (crate::openapi::ErrorBody = "application/json"))),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let map = query.into_inner();
    let (client, auth) = match prepare(&state, &map).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let Some(ticket) = map.get("login_ticket").filter(|t| !t.is_empty()).cloned() else {
        return crate::hosted::authorize(&state, &req, map, client, auth).await;
    };
    let ticket = &ticket;
    match state.sesame.authorize_with_ticket(&client, ticket, auth).await {
        Ok(resp) => respond(&resp),
        Err(AuthorizeError::Redirect(r, auth)) => respond(&AuthorizationResponse::error(&auth, &r)),
        Err(AuthorizeError::UntrustedRedirect) => {
            error_page("The redirect_uri is not a registered callback of the application.")
        }
        Err(AuthorizeError::Unavailable(e) | AuthorizeError::Unexpected(e)) => {
            tracing::warn!(error = ?e, "authorize failed");
            unavailable_page()
        }
    }
}
