//! `POST /oauth/token` through the whole app (middleware, routes, flows, memory store).
//!
//! Input: a request as text (`sesame_fuzz::request`); `{{code}}` / `{{sms_code}}` become a live
//! code for jane@example.com / +14155552671 (issued by the harness just before), `{{assertion}}`
//! and `{{assertion_token}}` fresh private_key_jwt assertions of `jwt-app`.
//!
//! Properties:
//! - the body parser reads back what it read, written again (JSON and form);
//! - every answer is 200 or an Auth0 error, never a 5xx;
//! - a body that is neither a JSON object nor a form is `400 invalid_request`;
//! - a 200 carries `token_type` Bearer, `no-store`, and an id_token Sesame signed for the
//!   client, for the identifier the code was sent to;
//! - a code is accepted once: the same request again is refused;
//! - a refresh token works once: its reuse is refused and revokes the new one too;
//! - without a live code, the body re-serialised as JSON gets the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sesame_domain::{Email, PhoneNumber};
use sesame_fuzz::app::{Codes, EMAIL, Harness, PHONE, has_placeholder, with_harness};
use sesame_fuzz::request::{RawRequest, Reply, assert_round_trip};

const ALLOWED: &[u16] = &[200, 400, 401, 403, 413, 429];
const PATH: &str = "/oauth/token";
const OTP: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";

fuzz_target!(|data: &[u8]| {
    with_harness(|h| {
        let mut codes = Codes::default();
        let filled = h.fill(data, &mut codes);
        let req = RawRequest::parse(&filled);
        let map = req.object();
        if let Some(m) = &map {
            assert_round_trip(&req, m);
        }
        let reply = h.send(PATH, &req);
        reply.assert_auth0_shape(ALLOWED);
        let Some(map) = map else {
            if reply.status != 413 {
                assert_eq!((reply.status, reply.error().0), (400, Some("invalid_request")), "{}", reply.text());
            }
            return;
        };
        if reply.status == 200 {
            check_tokens(h, &map, &reply);
            // The same request (same code, a fresh assertion) once more: a code is single-use.
            let again = h.send(PATH, &RawRequest::parse(&h.fill(data, &mut codes)));
            again.assert_auth0_shape(ALLOWED);
            assert_ne!(again.status, 200, "a code was accepted twice: {}", again.text());
            if let Some(refresh) = reply.body["refresh_token"].as_str() {
                check_refresh(h, &req, &map, refresh);
            }
        } else if !has_placeholder(data) && reply.status != 413 {
            let again = h.send(PATH, &req.with_content_type("application/json", serde_json::to_vec(&map).unwrap()));
            assert_eq!(
                (reply.status, reply.error()),
                (again.status, again.error()),
                "the body re-serialised as JSON is answered differently"
            );
        }
    });
});

fn check_tokens(h: &Harness, map: &Map<String, Value>, reply: &Reply) {
    let body = &reply.body;
    assert_eq!(body["token_type"], "Bearer", "{}", reply.text());
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{}", reply.text());
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{}", reply.text());
    let no_store = reply.headers.get("cache-control").and_then(|v| v.to_str().ok());
    assert_eq!(no_store, Some("no-store"), "tokens without Cache-Control: no-store");
    if map.get("grant_type").and_then(Value::as_str) != Some(OTP) {
        return;
    }
    let username = map["username"].as_str().expect("a 200 OTP exchange had a string username");
    let realm = map["realm"].as_str().expect("a 200 OTP exchange had a string realm");
    let is_email = realm.starts_with("email");
    if is_email {
        assert_eq!(Email::parse(username).map(|e| e.as_str().to_owned()).ok().as_deref(), Some(EMAIL));
    } else {
        assert_eq!(PhoneNumber::parse(username).map(|p| p.e164().to_owned()).ok().as_deref(), Some(PHONE));
    }
    if let Some(id_token) = body["id_token"].as_str() {
        let claims = h.verify_token(id_token);
        assert_eq!(claims["iss"], sesame_fuzz::ISSUER);
        let sub = claims["sub"].as_str().unwrap_or_default();
        assert!(!sub.is_empty(), "id_token without sub");
        let client = map.get("client_id").and_then(Value::as_str);
        if let Some(client) = client {
            let aud_ok = match &claims["aud"] {
                Value::String(a) => a == client,
                Value::Array(a) => a.iter().any(|v| v == client),
                _ => false,
            };
            assert!(aud_ok, "id_token aud {} is not the client {client}", claims["aud"]);
        }
        for (claim, value) in [("email", EMAIL), ("phone_number", PHONE)] {
            if let Some(v) = claims.get(claim).and_then(Value::as_str) {
                assert_eq!(v, value, "id_token {claim} is not the identifier the code went to");
            }
        }
    }
}

/// A refresh token rotates once; reusing the old one is refused and revokes the new one.
fn check_refresh(h: &Harness, req: &RawRequest, map: &Map<String, Value>, refresh: &str) {
    let client_fields = ["client_id", "client_secret"];
    if map.contains_key("client_assertion") {
        return;
    }
    let mut body = json!({"grant_type": "refresh_token", "refresh_token": refresh});
    for f in client_fields {
        if let Some(v) = map.get(f) {
            body[f] = v.clone();
        }
    }
    let send = |b: &Value| h.send(PATH, &req.with_content_type("application/json", serde_json::to_vec(b).unwrap()));
    let first = send(&body);
    first.assert_auth0_shape(ALLOWED);
    assert_eq!(first.status, 200, "a fresh refresh token was refused: {}", first.text());
    let rotated = first.body["refresh_token"].as_str().expect("rotation returns a new refresh token").to_owned();
    assert_ne!(rotated, refresh);
    let reuse = send(&body);
    assert_ne!(reuse.status, 200, "a refresh token was accepted twice");
    body["refresh_token"] = Value::String(rotated);
    let revoked = send(&body);
    assert_ne!(revoked.status, 200, "reuse of a refresh token did not revoke its family");
}
