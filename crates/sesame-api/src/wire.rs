//! Reading request bodies as Auth0 does: JSON objects (and form bodies on `/oauth/token`),
//! `null` meaning absent, each type error naming its field.

use std::net::IpAddr;

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

/// The body as a JSON object. Form bodies become an object of strings. Only JSON and form
/// bodies are read: a `text/plain` body (or one without a type) is what a page on any origin can
/// make a browser send without a CORS preflight, so it is refused.
///
/// # Errors
/// `None` when the body is not an object in its encoding, or not JSON or a form, or when any
/// key or string in it holds a NUL character (no store can keep one: Postgres refuses it).
pub fn object(req: &HttpRequest, body: &[u8]) -> Option<Map<String, Value>> {
    let map: Map<String, Value> = match encoding(req)? {
        Encoding::Form => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
            pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
        }
        Encoding::Json => match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(map) => map,
            _ => return None,
        },
    };
    (!map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))).then_some(map)
}

/// Whether any string or key in `v` holds a NUL character.
pub fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
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

/// The caller's address as a rate-limit bucket: the socket peer, unless the peer is a trusted
/// proxy; then `X-Forwarded-For` read right to left, skipping trusted proxies, up to the first
/// address that is not one. Entries further left were written by the client and prove nothing;
/// a malformed entry ends the chain there (nothing left of it is believed), and the nearest
/// trusted hop stands in. IPv4-mapped IPv6 addresses are their IPv4 address; IPv6 clients share
/// one bucket per /64 (one host usually holds a whole /64).
pub fn client_ip(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> Option<String> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let headers = req.headers().get_all("x-forwarded-for").map(|v| v.to_str().ok());
    Some(bucket(forwarded_client(peer, headers, trusted)))
}

fn forwarded_client<'a>(
    peer: IpAddr,
    headers: impl DoubleEndedIterator<Item = Option<&'a str>>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut nearest = peer;
    if !is_trusted(&peer) {
        return peer;
    }
    for header in headers.rev() {
        // A header that is not even text is as malformed as a bad entry.
        let Some(header) = header else { return nearest };
        for entry in header.rsplit(',') {
            let Some(ip) = parse_hop(entry.trim()) else { return nearest };
            if !is_trusted(&ip) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The rate-limit bucket of an address: itself for IPv4, its /64 for IPv6.
pub fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |n| n.trunc().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, header: &[&str], trusted: &[&str]) -> String {
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().expect("net")).collect();
        let peer: IpAddr = peer.parse().expect("peer");
        bucket(forwarded_client(peer.to_canonical(), header.iter().map(|h| Some(*h)), &trusted))
    }

    #[test]
    fn the_chain_is_read_right_to_left_and_stops_at_a_bad_hop() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(client("10.0.0.5", &["203.0.113.9"], &lb), "203.0.113.9");
        assert_eq!(client("10.0.0.5", &["1.1.1.1, 203.0.113.9, 10.0.0.7"], &lb), "203.0.113.9");
        assert_eq!(client("10.0.0.5", &["1.1.1.1", "203.0.113.9:4711"], &lb), "203.0.113.9");
        assert_eq!(client("10.0.0.5", &["203.0.113.9, x"], &lb), "10.0.0.5", "junk: the proxy's bucket");
        assert_eq!(client("10.0.0.5", &["203.0.113.9, x, 10.0.0.7"], &lb), "10.0.0.7");
        assert_eq!(client("10.0.0.5", &[], &lb), "10.0.0.5");
        assert_eq!(client("192.0.2.1", &["203.0.113.9"], &lb), "192.0.2.1", "untrusted peer: header ignored");
        assert_eq!(client("::ffff:10.0.0.5", &["198.51.100.1"], &lb), "198.51.100.1", "IPv4-mapped peer");
        assert_eq!(client("10.0.0.5", &["2001:db8:0:1:abcd::9"], &lb), "2001:db8:0:1::/64");
        assert_eq!(client("10.0.0.5", &["[2001:db8::1]:443"], &lb), "2001:db8::/64");
    }
}
