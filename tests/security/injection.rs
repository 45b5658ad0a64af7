//! Hostile input in every field: CR/LF and quotes where a value reaches an email header, a
//! template, a redirect, a log line or SQL; oversized bodies and fields; invalid UTF-8; deep
//! JSON. Each gets a clear 4xx in Auth0's shape (or is carried safely), never a 500.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::stack::{Kind, on_both, stack};

/// Posts raw bytes and returns (status, body as JSON, headers): a 4xx must be Auth0's shape.
async fn post_bytes(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} answered {status} with no JSON: {text:?}"));
    assert!(status < 500, "{path}: {status} {text}");
    (status, json)
}

fn auth0_error(status: u16, body: &Value, what: &str) {
    assert!((400..500).contains(&status), "{what}: {status} {body}");
    assert!(body["error"].is_string() && body["error_description"].is_string(), "{what}: Auth0's shape: {body}");
}

async fn hostile_identifiers_are_refused_or_carried_safely(kind: Kind) {
    let app = stack(kind, |s| {
        s.limits.start_per_ip = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
    })
    .await;
    let start = |email: &str| json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"});
    // Header injection through the recipient, NUL, control and oversized values: refused.
    for email in [
        "victim@example.com\r\nBcc: all@evil.example",
        "victim@example.com\nBcc: all@evil.example",
        "vic\u{0}tim@example.com",
        "vic\u{7f}tim@example.com",
        "victim@example.com>, <other@example.com",
        "victim@example.com, other@example.com",
        "\"victim\r\n\"@example.com",
        &format!("{}@example.com", "a".repeat(5_000)),
        &format!("a@{}.com", "b".repeat(300)),
    ] {
        let r = app.post_start(&start(email)).await;
        auth0_error(r.status, &r.body, &format!("{email:?}"));
    }
    // Surrounding whitespace (CR and LF included) is trimmed: the address is carried clean.
    for email in ["victim@example.com\r", "\r\nvictim@example.com\r\n", "\tvictim@example.com "] {
        let r = app.post_start(&start(email)).await;
        assert_eq!((r.status, r.body["email"].as_str()), (200, Some("victim@example.com")), "{email:?}: {}", r.body);
    }
    let phone = |p: &str| json!({"client_id": "public-app", "connection": "sms", "phone_number": p});
    for p in ["+14155552671\r\n", "+1415555'2671", "+1415555; DROP TABLE users;--", &"9".repeat(5_000)] {
        let r = app.post_start(&phone(p)).await;
        auth0_error(r.status, &r.body, &format!("{p:?}"));
    }
    // Quotes and SQL in fields that are looked up: a clean 4xx, and the store is intact.
    for client in
        ["x' OR '1'='1", "public-app'; DROP TABLE clients;--", "public-app\r\nX-Evil: 1", "%00", "../../etc/passwd"]
    {
        let r = app.post_start(&json!({"client_id": client, "connection": "email", "email": "a@example.com"})).await;
        auth0_error(r.status, &r.body, client);
        let r = app.post_token(&TestApp::otp_body(client, "email", "a@example.com", "123456")).await;
        auth0_error(r.status, &r.body, client);
    }
    for connection in ["email' --", "email\r\n", "sms; DROP TABLE users"] {
        let r = app
            .post_start(&json!({"client_id": "public-app", "connection": connection, "email": "a@example.com"}))
            .await;
        auth0_error(r.status, &r.body, connection);
    }
    // A valid address full of characters that mean something to SQL, HTML and Liquid: it
    // logs in, and the message shows it as text.
    let odd = "o'brien&{{7*7}}|%s@example.com";
    let code = app.start_and_read_code("public-app", "email", odd).await;
    let msg = &app.mailbox(odd, 1).await[0];
    let text = msg.to_string();
    // Evaluated, `{{7*7}}` would read `o'brien&49|`; a bare "49" could be in the random code.
    assert!(!text.contains("&49|"), "no template evaluation of user input: {text}");
    assert_eq!(msg["to"].as_str(), Some(odd), "the address is carried as it was given");
    if let Some(html) = msg["html"].as_str() {
        assert!(!html.contains("o'brien&{{"), "HTML-escaped in the HTML part: {html}");
    }
    assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", odd, &code)).await.status, 200);
    let again = app.start_and_read_code("public-app", "email", "after-sql@example.com").await;
    assert_eq!(
        app.post_token(&TestApp::otp_body("public-app", "email", "after-sql@example.com", &again)).await.status,
        200,
        "the store is intact"
    );
}
on_both!(hostile_identifiers_case, hostile_identifiers_are_refused_or_carried_safely);

async fn hostile_bodies_get_a_clear_4xx(kind: Kind) {
    let app = stack(kind, |_| {}).await;
    for path in ["/passwordless/start", "/oauth/token", "/passwordless/verify", "/co/authenticate"] {
        let big = format!("{{\"client_id\":\"public-app\",\"email\":\"{}\"}}", "a".repeat(100_000));
        let (status, body) = post_bytes(&app, path, "application/json", big.into_bytes()).await;
        assert_eq!(status, 413, "{path}: {body}");
        auth0_error(status, &body, path);
        let (status, body) = post_bytes(&app, path, "application/json", b"{\"client_id\":\"\xff\xfe\"}".to_vec()).await;
        auth0_error(status, &body, &format!("{path} invalid UTF-8"));
        let (status, body) =
            post_bytes(&app, path, "application/x-www-form-urlencoded", b"client_id=%ff%fe&email=a%40b.c".to_vec())
                .await;
        auth0_error(status, &body, &format!("{path} invalid UTF-8 in a form"));
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let (status, body) = post_bytes(&app, path, "application/json", deep.into_bytes()).await;
        auth0_error(status, &body, &format!("{path} deep JSON"));
        let deep_obj = format!("{{\"authParams\":{}1{}}}", "{\"a\":".repeat(3_000), "}".repeat(3_000));
        let (status, body) = post_bytes(&app, path, "application/json", deep_obj.into_bytes()).await;
        auth0_error(status, &body, &format!("{path} deep object"));
        for junk in [&b"null"[..], b"[]", b"\"x\"", b"{\"client_id\":{}}", b"{\"client_id\":1e999}", b"{", b""] {
            let (status, body) = post_bytes(&app, path, "application/json", junk.to_vec()).await;
            auth0_error(status, &body, &format!("{path} {:?}", String::from_utf8_lossy(junk)));
        }
    }
}
on_both!(hostile_bodies_case, hostile_bodies_get_a_clear_4xx);

async fn crlf_in_a_redirect_parameter_never_splits_the_response(kind: Kind) {
    let app = stack(kind, |s| s.magic_link.confirm = false).await;
    let email = "split@example.com";
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": email, "send": "link",
            "authParams": {"response_type": "code", "redirect_uri": "https://app.example.com/callback",
                           "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
                           "state": "s\r\nSet-Cookie: session=evil\r\n\r\n<script>alert(1)</script>"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = app.mailbox(email, 1).await[0]["link"].as_str().unwrap().replacen(
        crate::helpers::ISSUER,
        &format!("{}/", app.base),
        1,
    );
    let resp = app.http.get(&link).send().await.unwrap();
    assert!(
        resp.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap_or("").contains("evil")),
        "no injected header"
    );
    let location = resp.headers().get("location").expect("a redirect").to_str().unwrap().to_owned();
    assert!(location.starts_with("https://app.example.com/callback?"), "{location}");
    assert!(!location.contains(['\r', '\n', '<', '>']), "the state is encoded: {location}");
    // A request id that could forge a log line is not echoed.
    let r = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "a\tb\"}{\"level\":\"ERROR")
        .send()
        .await
        .unwrap();
    let echoed = r.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(!echoed.contains(['"', '{', '\t']), "{echoed}");
}
on_both!(crlf_in_a_redirect_parameter_case, crlf_in_a_redirect_parameter_never_splits_the_response);
