//! `POST /passwordless/start` through the whole app (middleware, routes, flows, memory store).
//!
//! Input: a request as text (`sesame_fuzz::request`), headers, an empty line, the body;
//! `{{assertion}}` becomes a fresh private_key_jwt assertion of `jwt-app`.
//!
//! Properties:
//! - the body parser (`wire::object`, JSON and form) reads back what it read, written again;
//! - every answer is 200 or an Auth0 error (`{"error", "error_description"}`, 400/401/403/413/429),
//!   never a 5xx, whatever the body and headers;
//! - a body that is no object in its encoding is `400 bad.request`;
//! - a 200 names the identifier as normalised (`Email::parse`, `PhoneNumber::parse`) from a body
//!   with only the allowed properties;
//! - the same request with its body re-serialised as JSON gets the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sesame_domain::{Email, PhoneNumber};
use sesame_fuzz::app::{Codes, has_placeholder, with_harness};
use sesame_fuzz::request::{RawRequest, Reply, assert_round_trip};

/// The properties the endpoint accepts (`routes::START_FIELDS`).
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
const ALLOWED: &[u16] = &[200, 400, 401, 403, 413, 429];
const PATH: &str = "/passwordless/start";

fuzz_target!(|data: &[u8]| {
    with_harness(|h| {
        let filled = h.fill(data, &mut Codes::default());
        let req = RawRequest::parse(&filled);
        let map = req.object();
        if let Some(m) = &map {
            assert_round_trip(&req, m);
        }
        let reply = h.send(PATH, &req);
        reply.assert_auth0_shape(ALLOWED);
        let Some(map) = map else {
            if reply.status != 413 {
                assert_eq!((reply.status, reply.error().0), (400, Some("bad.request")), "{}", reply.text());
            }
            return;
        };
        if reply.status == 200 {
            check_started(&map, &reply);
        }
        if !has_placeholder(data) && reply.status != 413 {
            let again = h.send(PATH, &req.with_content_type("application/json", serde_json::to_vec(&map).unwrap()));
            assert_eq!(
                (reply.status, reply.error()),
                (again.status, again.error()),
                "the body re-serialised as JSON is answered differently"
            );
        }
    });
});

fn check_started(map: &Map<String, Value>, reply: &Reply) {
    let body = &reply.body;
    for key in map.keys() {
        assert!(START_FIELDS.contains(&key.as_str()), "200 with the property {key:?}");
    }
    assert!(map["connection"].is_string(), "200 without a string connection");
    let id = body["_id"].as_str().unwrap_or_default();
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()), "_id {id:?}");
    if let Some(email) = body["email"].as_str() {
        let sent = map["email"].as_str().expect("a 200 for an email had a string email");
        let parsed = Email::parse(sent).expect("a 200 for an email that does not parse");
        assert_eq!(parsed.as_str(), email, "the answer's email is not the normalised one");
        assert_eq!(body["email_verified"], Value::Bool(false));
    } else {
        let phone = body["phone_number"].as_str().expect("a 200 names an email or a phone number");
        let sent = map["phone_number"].as_str().expect("a 200 for a number had a string phone_number");
        let parsed = PhoneNumber::parse(sent).expect("a 200 for a number that does not parse");
        assert_eq!(parsed.e164(), phone, "the answer's number is not the E.164 one");
        assert_eq!(body["phone_verified"], Value::Bool(false));
        assert!(body.get("request_language").is_some(), "an SMS start answers request_language");
    }
}
