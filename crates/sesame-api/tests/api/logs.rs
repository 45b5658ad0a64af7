//! What `sesame serve` writes to its log, read as an operator's log shipper reads it: the real
//! binary, `RUST_LOG=debug`, `log_format = "json"`, every flow run over HTTP, then every secret
//! the flows handled looked for in the captured output.

use std::time::Duration;

use serde_json::{Value, json};

use crate::assertions::{JWT_BEARER, assertion, rsa_keys};
use crate::helpers::{API, OTP_GRANT, WEB_SECRET};
use crate::links::{CALLBACK, CHALLENGE, VERIFIER, params_after, query_of};
use crate::served::Served;

const ISSUER: &str = "https://sesame.logs.test/";

fn config(dir: &std::path::Path, jwt_public_key: &str) -> std::path::PathBuf {
    let path = dir.join("sesame.toml");
    let toml = format!(
        r#"
issuer = "{ISSUER}"
listen = "127.0.0.1:0"
log_format = "json"
server_secret = "log-test-server-secret-0123456789abcdef"

[delivery]
poll_ms = 20

[[apis]]
identifier = "{API}"
allow_offline_access = true

[[clients]]
client_id = "public-app"
name = "Public"
callbacks = ["{CALLBACK}"]

[[clients]]
client_id = "web-app"
name = "Web"
app_type = "regular_web"
auth_method = "client_secret_post"
client_secret = "{WEB_SECRET}"

[[clients]]
client_id = "jwt-app"
name = "JWT"
app_type = "regular_web"
auth_method = "private_key_jwt"
public_keys = [{jwt_public_key:?}]
"#
    );
    std::fs::write(&path, toml).expect("config");
    path
}

async fn post(http: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn newest_message(http: &reqwest::Client, base: &str, to: &str, at_least: usize) -> Value {
    for _ in 0..1500 {
        let list: Vec<Value> = http
            .get(format!("{base}/dev/mailbox"))
            .query(&[("to", to)])
            .send()
            .await
            .expect("mailbox")
            .json()
            .await
            .expect("json");
        if list.len() >= at_least {
            return list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no message for {to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_of_every_flow_hold_no_secret_and_mask_identifiers() {
    let dir = std::env::temp_dir().join(format!("sesame-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = rsa_keys();
    let served = Served::start(&config(&dir, &keys.public_pem), "serve", &[("RUST_LOG", "debug")]);
    let base = served.base.clone();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut secrets: Vec<(String, String)> = vec![("client secret".into(), WEB_SECRET.into())];

    // A code by email, exchanged for tokens with a refresh token; a wrong code before it.
    let email = "logged.person@example.com";
    let start = json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"});
    assert_eq!(post(&http, format!("{base}/passwordless/start"), &start).await.0, 200);
    let code = newest_message(&http, &base, email, 1).await["code"].as_str().expect("code").to_owned();
    secrets.push(("email code".into(), code.clone()));
    let otp = |otp: &str| {
        json!({"grant_type": OTP_GRANT, "client_id": "public-app", "realm": "email", "username": email,
               "otp": otp, "scope": "openid offline_access", "audience": API})
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(post(&http, format!("{base}/oauth/token"), &otp(wrong)).await.0, 403);
    let (status, tokens) = post(&http, format!("{base}/oauth/token"), &otp(&code)).await;
    assert_eq!(status, 200, "{tokens}");
    for name in ["access_token", "id_token", "refresh_token"] {
        secrets.push((name.into(), tokens[name].as_str().expect(name).to_owned()));
    }
    let refresh =
        |token: &str| json!({"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": token});
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, refreshed) = post(&http, format!("{base}/oauth/token"), &refresh(&refresh_token)).await;
    assert_eq!(status, 200, "{refreshed}");
    for name in ["access_token", "id_token", "refresh_token"] {
        secrets.push((format!("refreshed {name}"), refreshed[name].as_str().expect(name).to_owned()));
    }
    // Reusing the rotated token fails (and revokes the family).
    assert_eq!(post(&http, format!("{base}/oauth/token"), &refresh(&refresh_token)).await.0, 403);
    let userinfo = http
        .get(format!("{base}/userinfo"))
        .bearer_auth(refreshed["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), 200);

    // A magic link (code flow with PKCE), opened, confirmed, its authorization code exchanged.
    let link_to = "linked.person@example.com";
    let start = json!({"client_id": "public-app", "connection": "email", "email": link_to, "send": "link",
        "authParams": {"response_type": "code", "redirect_uri": CALLBACK, "scope": "openid", "state": "s1",
                       "code_challenge": CHALLENGE, "code_challenge_method": "S256"}});
    assert_eq!(post(&http, format!("{base}/passwordless/start"), &start).await.0, 200);
    let link = newest_message(&http, &base, link_to, 1).await["link"].as_str().expect("link").to_owned();
    let link = link.replacen(ISSUER, &format!("{base}/"), 1);
    let query = query_of(&link);
    secrets.push(("link token".into(), query["verification_code"].clone()));
    assert_eq!(http.get(&link).send().await.expect("open link").status(), 200, "confirmation page");
    let form: Vec<(String, String)> = query.into_iter().collect();
    let confirmed =
        http.post(format!("{base}/passwordless/verify_redirect")).form(&form).send().await.expect("confirm");
    assert_eq!(confirmed.status(), 302);
    let location = confirmed.headers()["location"].to_str().expect("ascii").to_owned();
    let auth_code = params_after(&location, '?')["code"].clone();
    secrets.push(("authorization code".into(), auth_code.clone()));
    let exchange = json!({"grant_type": "authorization_code", "client_id": "public-app", "code": auth_code,
                          "redirect_uri": CALLBACK, "code_verifier": VERIFIER});
    let (status, linked) = post(&http, format!("{base}/oauth/token"), &exchange).await;
    assert_eq!(status, 200, "{linked}");
    secrets.push(("link id_token".into(), linked["id_token"].as_str().expect("id").to_owned()));

    // SMS, from a confidential client; then its secret wrong.
    let phone = "+14155552671";
    let sms = json!({"client_id": "web-app", "client_secret": WEB_SECRET, "connection": "sms", "phone_number": phone});
    let (status, body) = post(&http, format!("{base}/passwordless/start"), &sms).await;
    assert_eq!(status, 200, "{body}");
    let sms_code = newest_message(&http, &base, phone, 1).await["code"].as_str().expect("code").to_owned();
    secrets.push(("sms code".into(), sms_code));
    let mut bad = sms.clone();
    bad["client_secret"] = json!("not-the-web-secret-at-all");
    secrets.push(("wrong client secret".into(), "not-the-web-secret-at-all".into()));
    assert_eq!(post(&http, format!("{base}/passwordless/start"), &bad).await.0, 401);

    // private_key_jwt: an assertion used, then replayed.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signed = assertion(
        &keys,
        json!({"iss": "jwt-app", "sub": "jwt-app", "aud": ISSUER, "iat": now, "exp": now + 60, "jti": "log-jti-1"}),
    );
    secrets.push(("client assertion".into(), signed.clone()));
    let jwt_start = json!({"client_id": "jwt-app", "connection": "email", "email": "jwt.person@example.com", "send": "code",
                           "client_assertion": signed, "client_assertion_type": JWT_BEARER});
    let (status, body) = post(&http, format!("{base}/passwordless/start"), &jwt_start).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(post(&http, format!("{base}/passwordless/start"), &jwt_start).await.0, 401, "replayed");
    // A garbage bearer token.
    let garbage = http.get(format!("{base}/userinfo")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().await;
    assert_eq!(garbage.expect("userinfo").status(), 401);

    let log = served.stop();
    let text = log.join("\n");
    assert!(log.len() > 20, "a debug log was captured: {text}");
    assert!(log.iter().any(|l| l.contains(r#""level":"DEBUG""#)), "debug lines are in it");
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        if text.contains(secret.as_str()) {
            leaks.push(what.clone());
        }
    }
    // Each identifier appears only masked.
    for (raw, masked) in [
        (email, "l***@example.com"),
        (link_to, "l***@example.com"),
        ("jwt.person@example.com", "j***@example.com"),
        (phone, "+1415***2671"),
    ] {
        if text.contains(raw) || text.contains(&raw[1..]) {
            leaks.push(raw.to_owned());
        }
        assert!(text.contains(masked), "{masked} is how {raw} appears in the log");
    }
    assert!(leaks.is_empty(), "found in the log: {leaks:?}");
    // One JSON object a line; every request line carries its request id.
    for line in &log {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if v["message"] == "request" {
            assert!(v["span"]["request_id"].is_string() || v["request_id"].is_string(), "{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
