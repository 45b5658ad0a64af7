//! `sesame migrate` and `sesame client …` as an operator runs them, against a real database.

use std::process::Command;

use serde_json::{Value, json};
use sesame_postgres::testing::TestDatabase;

use crate::helpers::{OTP_GRANT, spawn_app_on};

fn sesame(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sesame");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(args: (bool, String, String)) -> Value {
    assert!(args.0, "command failed: {}", args.2);
    serde_json::from_str(&args.1).unwrap_or_else(|_| panic!("not JSON: {}", args.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_managed_from_the_command_line() {
    let db = TestDatabase::new().await.expect("test database");
    let dir = std::env::temp_dir().join(format!("sesame-cli-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"postgres\"\nserver_secret = \"test-server-secret-0123456789abcdef0123\"\n[database]\nurl = \"{}\"\n",
            db.config().url
        ),
    )
    .expect("config");

    let (ok, out, err) = sesame(&config, &["migrate"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "database is up to date");

    let native = json_of(sesame(&config, &["client", "create", "--name", "Phone app", "--json"]));
    assert_eq!(native["app_type"], "native");
    assert_eq!(native["token_endpoint_auth_method"], "none");
    assert_eq!(native["connections"], json!(["email", "sms"]));
    assert_eq!(native["grant_types"], json!([OTP_GRANT, "refresh_token"]));
    assert!(native.get("client_secret").is_none());
    assert_eq!(native["client_id"].as_str().map(str::len), Some(32));

    let web = json_of(sesame(
        &config,
        &[
            "client",
            "create",
            "--name",
            "Web",
            "--type",
            "regular-web",
            "--callback",
            "https://w.example/cb",
            "--origin",
            "https://w.example",
            "--json",
        ],
    ));
    let web_id = web["client_id"].as_str().expect("id").to_owned();
    let first_secret = web["client_secret"].as_str().expect("secret shown once").to_owned();
    assert_eq!(web["callbacks"], json!(["https://w.example/cb"]));

    let (ok, text, _) = sesame(&config, &["client", "show", &web_id]);
    assert!(ok);
    assert!(text.contains("client_secret_post") && !text.contains(&first_secret), "the secret is never shown again");
    let listed = json_of(sesame(&config, &["client", "list", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    let rotated = json_of(sesame(&config, &["client", "rotate-secret", &web_id, "--json"]));
    let second_secret = rotated["client_secret"].as_str().expect("new secret").to_owned();
    assert_ne!(first_secret, second_secret);
    let (ok, _, err) = sesame(&config, &["client", "rotate-secret", native["client_id"].as_str().expect("id")]);
    assert!(!ok && err.contains("no secret"), "{err}");
    let (ok, _, err) =
        sesame(&config, &["client", "create", "--name", "Bad", "--type", "spa", "--auth-method", "client-secret-post"]);
    assert!(!ok && err.contains("public"), "{err}");

    // A running Sesame on the same database sees the CLI's clients and the rotated secret.
    let cache = std::time::Duration::from_millis(300);
    let app = spawn_app_on(db.config().url, |s| {
        s.database.as_mut().expect("database").cache_ms = u64::try_from(cache.as_millis()).expect("ms");
    })
    .await;
    let start = |secret: &str| json!({"client_id": web_id, "client_secret": secret, "connection": "email", "email": "cli@example.com", "send": "code"});
    app.post_start(&start(&first_secret)).await.assert_error(401, "invalid_client", "Invalid client credentials");
    assert_eq!(app.post_start(&start(&second_secret)).await.status, 200);

    let (ok, out, _) = sesame(&config, &["client", "delete", &web_id]);
    assert!(ok && out.contains("deleted"));
    // The running replica keeps what it read for `[database] cache_ms`, then sees the deletion.
    tokio::time::sleep(cache + std::time::Duration::from_millis(200)).await;
    app.post_start(&start(&second_secret)).await.assert_error(400, "bad.client_id", "Unknown client");
    let (ok, _, err) = sesame(&config, &["client", "show", &web_id]);
    assert!(!ok && err.contains("no client"), "{err}");
    // private_key_jwt: a key file is required, checked, and stored.
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
    let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
        aws_lc_rs::signature::KeyPair::public_key(&pair),
    )
    .expect("spki");
    let key_file = dir.join("client.pem");
    std::fs::write(&key_file, pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()))).expect("key file");
    let key_path = key_file.to_str().expect("utf-8 path");
    let jwt = json_of(sesame(
        &config,
        &[
            "client",
            "create",
            "--name",
            "Backend",
            "--type",
            "regular-web",
            "--auth-method",
            "private-key-jwt",
            "--public-key",
            key_path,
            "--json",
        ],
    ));
    assert_eq!(
        (jwt["token_endpoint_auth_method"].as_str(), jwt["public_keys"].as_u64()),
        (Some("private_key_jwt"), Some(1))
    );
    assert!(jwt.get("client_secret").is_none());
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").expect("file");
    let (ok, _, err) = sesame(
        &config,
        &[
            "client",
            "create",
            "--name",
            "Bad key",
            "--type",
            "regular-web",
            "--auth-method",
            "private-key-jwt",
            "--public-key",
            garbage.to_str().expect("path"),
        ],
    );
    assert!(!ok && err.contains("not a usable public key"), "{err}");

    // Connection settings: shown, updated, refused out of range.
    let email = json_of(sesame(&config, &["connection", "show", "email", "--json"]));
    assert_eq!((email["code_length"].as_u64(), email["disable_signup"].as_bool()), (Some(6), Some(false)));
    let updated = json_of(sesame(
        &config,
        &["connection", "update", "email", "--code-length", "8", "--disable-signup", "true", "--json"],
    ));
    assert_eq!((updated["code_length"].as_u64(), updated["disable_signup"].as_bool()), (Some(8), Some(true)));
    let (ok, _, err) = sesame(&config, &["connection", "update", "email", "--code-lifetime-secs", "3600"]);
    assert!(!ok && err.contains("lifetime"), "{err}");
    // Per-connection limits: the sms connection may only reach France now.
    let sms = json_of(sesame(
        &config,
        &["connection", "update", "sms", "--sms-countries", "fr", "--start-per-identifier", "2/3600", "--json"],
    ));
    assert_eq!(sms["limits"]["sms_allowed_countries"], json!(["FR"]));
    assert_eq!(sms["limits"]["start_per_identifier"], json!({"limit": 2, "window_secs": 3600}));
    let native_for_sms = native["client_id"].as_str().expect("id");
    let us = app
        .post_start(&json!({"client_id": native_for_sms, "connection": "sms", "phone_number": "+14155552671"}))
        .await;
    us.assert_error(400, "bad.phone_number", "SMS to this phone number's country is not allowed");
    let fr = json!({"client_id": native_for_sms, "connection": "sms", "phone_number": "+33612345678"});
    assert_eq!(app.post_start(&fr).await.status, 200);
    assert_eq!(app.post_start(&fr).await.status, 200);
    assert_eq!(app.post_start(&fr).await.status, 429, "the connection's own per-identifier limit");
    let cleared = json_of(sesame(&config, &["connection", "update", "sms", "--sms-countries", "-", "--json"]));
    assert!(cleared["limits"]["sms_allowed_countries"].is_null());
    let native_id = native["client_id"].as_str().expect("id");
    let signup = app
        .post_start(&json!({"client_id": native_id, "connection": "email", "email": "new@example.com", "send": "code"}))
        .await;
    // Sign-up off (set by `connection update --disable-signup` above): the answer a user gets, and
    // nothing sent (docs/security.md, enumeration).
    assert_eq!(signup.status, 200, "{}", signup.body);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent: Vec<serde_json::Value> = app
        .http
        .get(format!("{}/dev/mailbox", app.base))
        .query(&[("to", "new@example.com")])
        .send()
        .await
        .expect("mailbox")
        .json()
        .await
        .expect("json");
    assert!(sent.is_empty(), "nothing is sent to an unknown address with sign-up off: {sent:?}");

    let memory = dir.join("memory.toml");
    std::fs::write(&memory, "store = \"memory\"\n").expect("config");
    let (ok, _, err) = sesame(&memory, &["client", "list"]);
    assert!(!ok && err.contains("durable store"), "{err}");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` with an unsafe production-shaped configuration exits at once with one line that names
/// the key; a backtrace, when asked for, comes after that line.
#[test]
fn serve_refuses_unsafe_settings_with_one_line_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("sesame-cli-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sesame.toml");
    let cases: [(&str, &[&str], &str); 4] = [
        ("issuer = \"http://auth.example.com/\"\n", &["serve", "--listen", "0.0.0.0:0"], "issuer"),
        (
            "store = \"postgres\"\nserver_secret = \"Zq8xV2mN5pL0wK7rT4yH1jB6cF9dG3sA\"\n[database]\nurl = \"postgres://127.0.0.1:1/x\"\n",
            &["serve"],
            "email = \"ses\"",
        ),
        ("server_secret = \"short\"\n", &["serve"], "server_secret"),
        ("listen = \"127.0.0.1:8080\"\ncolour = \"blue\"\n", &["check-config"], "colour"),
    ];
    for (text, args, names) in cases {
        std::fs::write(&config, text).expect("config");
        for backtrace in ["0", "1"] {
            let out = Command::new(env!("CARGO_BIN_EXE_sesame"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("RUST_LOG", "off")
                .env("RUST_BACKTRACE", backtrace)
                .output()
                .expect("run sesame");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{text}: refused");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(first.starts_with("sesame: error: ") && first.contains(names), "{text}: first line {first:?}");
            if backtrace == "0" {
                assert_eq!(stderr.lines().count(), 1, "{text}: one line without RUST_BACKTRACE: {stderr}");
            }
        }
    }
    // An http:// issuer is fine for local use.
    std::fs::write(&config, "issuer = \"http://127.0.0.1:8080/\"\n").expect("config");
    let (ok, _, err) = sesame(&config, &["check-config"]);
    assert!(ok, "{err}");
}

/// `sesame user …` and a backend client made with `sesame client create`, against the database
/// a running replica uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_seen_blocked_exported_and_deleted_from_the_command_line() {
    let db = TestDatabase::new().await.expect("test database");
    let dir = std::env::temp_dir().join(format!("sesame-cli-users-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"https://sesame.test/\"\nstore = \"postgres\"\nserver_secret = \"test-server-secret-0123456789abcdef0123\"\n[database]\nurl = \"{}\"\n",
            db.config().url
        ),
    )
    .expect("config");
    assert!(sesame(&config, &["migrate"]).0);

    let backend = json_of(sesame(
        &config,
        &[
            "client",
            "create",
            "--name",
            "Backend",
            "--type",
            "non-interactive",
            "--api-scopes",
            "https://sesame.test/api/v2/=read:users,delete:users",
            "--logout-url",
            "https://app.example.com/bye",
            "--json",
        ],
    ));
    assert_eq!(backend["grant_types"], json!(["client_credentials"]));
    assert_eq!(backend["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(backend["api_scopes"], json!({"https://sesame.test/api/v2/": ["read:users", "delete:users"]}));
    assert_eq!(backend["allowed_logout_urls"], json!(["https://app.example.com/bye"]));
    assert_eq!(backend["require_pkce"], true, "on by default");
    let legacy = json_of(sesame(&config, &["client", "create", "--name", "Old app", "--no-require-pkce", "--json"]));
    assert_eq!(legacy["require_pkce"], false);
    let legacy_id = legacy["client_id"].as_str().expect("id").to_owned();
    let turned = json_of(sesame(&config, &["client", "require-pkce", &legacy_id, "true", "--json"]));
    assert_eq!(turned["require_pkce"], true);
    let (ok, _, err) =
        sesame(&config, &["client", "create", "--name", "X", "--api-scopes", "https://elsewhere.test/=a"]);
    assert!(!ok && err.contains("no API"), "{err}");

    let app = spawn_app_on(db.config().url, |_| {}).await;
    let email = "cli-user@example.com";
    let code = app.start_and_read_code("public-app", "email", email).await;
    assert_eq!(
        app.post_token(&crate::helpers::TestApp::otp_body("public-app", "email", email, &code)).await.status,
        200
    );
    // The backend's token, from the secret the CLI printed once.
    let token = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": backend["client_id"],
            "client_secret": backend["client_secret"], "audience": "https://sesame.test/api/v2/"}))
        .await;
    assert_eq!((token.status, token.body["scope"].as_str()), (200, Some("read:users delete:users")), "{}", token.body);

    let listed = json_of(sesame(&config, &["user", "list", "--json"]));
    assert_eq!(listed["total"], 1);
    let id = listed["users"][0]["user_id"].as_str().expect("id").to_owned();
    let shown = json_of(sesame(&config, &["user", "show", email, "--json"]));
    assert_eq!((shown["user_id"].as_str(), shown["logins_count"].as_u64()), (Some(id.as_str()), Some(1)));

    let blocked = json_of(sesame(&config, &["user", "block", &id, "--json"]));
    assert_eq!(blocked["blocked"], true);
    let start = json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"});
    app.post_start(&start).await.assert_error(401, "unauthorized", "user is blocked");
    assert_eq!(json_of(sesame(&config, &["user", "unblock", email, "--json"]))["blocked"], false);
    assert_eq!(app.post_start(&start).await.status, 200);

    let (ok, export, err) = sesame(&config, &["user", "export", &id]);
    assert!(ok, "{err}");
    let export: Value = serde_json::from_str(&export).expect("export is JSON");
    assert_eq!(export["user"]["email"], email);
    let kinds: Vec<&str> = export["logs"].as_array().expect("logs").iter().filter_map(|l| l["kind"].as_str()).collect();
    assert!(kinds.contains(&"login_succeeded") && kinds.contains(&"management_api"), "{kinds:?}");

    assert_eq!(json_of(sesame(&config, &["user", "delete", &id, "--json"]))["deleted"], json!(id));
    let (ok, _, err) = sesame(&config, &["user", "show", &id]);
    assert!(!ok && err.contains("no user"), "{err}");
    assert_eq!(json_of(sesame(&config, &["user", "list", "--json"]))["total"], 0);
}
