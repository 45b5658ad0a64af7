//! Reading request bodies as Auth0 does: JSON objects (and form bodies on `/oauth/token`),
//! `null` meaning absent, each type error naming its field.

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// How a body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

fn encoding(req: &HttpRequest) -> Option<Encoding> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?.to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim().to_owned();
    if mime == "application/x-www-form-urlencoded" {
        Some(Encoding::Form)
    } else if mime == "application/json" || mime.ends_with("+json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

/// The body as a JSON object. Form bodies become an object of strings. A body without a
/// content type is read as JSON.
///
/// # Errors
/// `None` when the body is not an object in its encoding.
pub fn object(req: &HttpRequest, body: &[u8]) -> Option<Map<String, Value>> {
    match encoding(req) {
        Some(Encoding::Form) => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
            Some(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        }
        Some(Encoding::Json) | None => match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        },
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string field; `null` or absent is `None`.
///
/// # Errors
/// `error` with "error in <name> - invalid type: <found> (expected string)".
pub fn string(map: &Map<String, Value>, name: &str, error: &'static str) -> Result<Option<String>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_request(
            error,
            format!("error in {name} - invalid type: {} (expected string)", type_name(other)),
        )),
    }
}

/// `Authorization: Basic base64(client_id:client_secret)`, with the RFC 6749 §2.3.1
/// form-decoding of both parts.
///
/// # Errors
/// 401 `invalid_client` when the header is present but not valid Basic credentials.
pub fn basic_auth(req: &HttpRequest) -> Result<Option<(String, String)>, ApiError> {
    parse_basic(req).map_err(|()| {
        ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client credentials")
    })
}

fn parse_basic(req: &HttpRequest) -> Result<Option<(String, String)>, ()> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| ())?;
    let text = String::from_utf8(decoded).map_err(|_| ())?;
    let (id, secret) = text.split_once(':').ok_or(())?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned()).map_err(|_| ())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// The language a start asked for: `x-request-language`, else `Accept-Language`, raw (spec §9.3),
/// bounded in size and free of control characters.
pub fn request_language(req: &HttpRequest) -> Option<String> {
    let pick = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control))
            .map(str::to_owned)
    };
    pick("x-request-language").or_else(|| pick("accept-language"))
}

/// The caller's address: the socket peer, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// were written by the client and prove nothing).
pub fn client_ip(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer.to_string());
    }
    let forwarded: Vec<std::net::IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|entry| entry.trim().parse().ok())
        .collect();
    let ip = forwarded.iter().rev().find(|ip| !is_trusted(ip)).or(forwarded.first()).copied().unwrap_or(peer);
    Some(ip.to_string())
}
