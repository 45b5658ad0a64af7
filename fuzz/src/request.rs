//! The input of the HTTP targets: a request as text, headers first.
//!
//! ```text
//! content-type: application/json
//! accept-language: fr-FR
//!
//! {"client_id":"public-app","connection":"email","email":"jane@example.com","send":"code"}
//! ```
//!
//! Header lines (`name: value`) up to the first empty line, then the body. Without an empty line
//! the whole input is a JSON body. Lines that are no valid header are skipped. Placeholders in
//! the body and headers are filled in per run (see [`crate::app::Harness::fill`]).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::test::TestRequest;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn parse(data: &[u8]) -> Self {
        let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
            return Self {
                headers: vec![(actix_web::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body: data.to_vec(),
            };
        };
        let headers = data[..split]
            .split(|b| *b == b'\n')
            .filter_map(|line| {
                let colon = line.iter().position(|b| *b == b':')?;
                let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
                let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
                Some((name, value))
            })
            .collect();
        Self { headers, body: data[split + 2..].to_vec() }
    }

    /// The same headers with `content-type` replaced.
    pub fn with_content_type(&self, ct: &'static str, body: Vec<u8>) -> Self {
        let mut headers: Vec<_> =
            self.headers.iter().filter(|(n, _)| *n != actix_web::http::header::CONTENT_TYPE).cloned().collect();
        headers.push((actix_web::http::header::CONTENT_TYPE, HeaderValue::from_static(ct)));
        Self { headers, body }
    }

    /// A POST to `path` from a fixed peer address.
    pub fn test_request(&self, path: &str) -> TestRequest {
        let mut req = TestRequest::post().uri(path).peer_addr("203.0.113.7:4711".parse().expect("addr"));
        for (name, value) in &self.headers {
            req = req.append_header((name.clone(), value.clone()));
        }
        req.set_payload(self.body.clone())
    }

    /// What `sesame_api::wire::object` makes of this request: the parser both endpoints use.
    pub fn object(&self) -> Option<Map<String, Value>> {
        sesame_api::wire::object(&self.test_request("/").to_http_request(), &self.body)
    }
}

/// The parser's round trip: an object it read, written again as JSON (and as a form when every
/// value is a string), reads back the same.
pub fn assert_round_trip(req: &RawRequest, map: &Map<String, Value>) {
    let json = serde_json::to_vec(map).expect("JSON");
    let again = req.with_content_type("application/json", json).object();
    assert_eq!(again.as_ref(), Some(map), "JSON re-serialisation of a parsed body parses differently");
    let pairs: Option<Vec<(&str, &str)>> = map.iter().map(|(k, v)| Some((k.as_str(), v.as_str()?))).collect();
    if let Some(pairs) = pairs {
        let form = serde_urlencoded::to_string(&pairs).expect("form");
        let again = req.with_content_type("application/x-www-form-urlencoded", form.into_bytes()).object();
        assert_eq!(again.as_ref(), Some(map), "form re-serialisation of a parsed body parses differently");
    }
}

/// An HTTP answer of the in-process app.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    /// Every refusal is Auth0's flat `{"error", "error_description"}`, both strings (what every
    /// SDK reads), and never a 5xx for anything a client can send.
    pub fn assert_auth0_shape(&self, allowed: &[u16]) {
        assert!(allowed.contains(&self.status), "status {} not in {allowed:?}: {}", self.status, self.text());
        assert!(self.body.is_object(), "body is not a JSON object: {}", self.text());
        if self.status != 200 {
            let error = self.body["error"].as_str();
            assert!(error.is_some_and(|e| !e.is_empty() && e.is_ascii()), "no error code: {}", self.text());
            assert!(self.body["error_description"].is_string(), "no error_description: {}", self.text());
        }
        // auth0-python runs `int()` on the reset header: integers only (spec §0.7).
        for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"] {
            if let Some(v) = self.headers.get(h) {
                let v = v.to_str().ok();
                assert!(v.is_some_and(|v| v.parse::<u64>().is_ok()), "{h} is not an integer: {v:?}");
            }
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    pub fn error(&self) -> (Option<&str>, Option<&str>) {
        (self.body["error"].as_str(), self.body["error_description"].as_str())
    }
}
