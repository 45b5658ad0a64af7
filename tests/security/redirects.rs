//! Open redirects: every variant of a registered callback that points elsewhere is refused by
//! `/authorize`, by a magic-link start and by a completed link; nothing ever redirects to a
//! host, scheme, port or path other than the registered `https://app.example.com/callback`.

use serde_json::json;

use crate::stack::{Kind, on_both, stack};

const CALLBACK: &str = "https://app.example.com/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const VARIANTS: &[&str] = &[
    "https://evil.example/callback",
    "https://app.example.com.evil.example/callback",
    "https://app.example.com@evil.example/callback",
    "https://app.example.com:443@evil.example/callback",
    "https://evil.example#@app.example.com/callback",
    "https://evil.example?@app.example.com/callback",
    "https://evil.example\\@app.example.com/callback",
    "https://app.example.com\\@evil.example/callback",
    "https://app.example.com%2f@evil.example/callback",
    "https://app.example.com%00.evil.example/callback",
    "https://app.example.com%E3%80%82evil.example/callback",
    "https://app.exаmple.com/callback",
    "http://app.example.com/callback",
    "https://app.example.com:8443/callback",
    "https://app.example.com/callbackx",
    "https://app.example.com/callback/../../evil",
    "https://app.example.com/callback/..%2F..%2Fevil",
    "https://app.example.com/callback/extra",
    "https://app.example.com/Callback",
    "//evil.example/callback",
    "/\\evil.example/callback",
    "https:/\\evil.example/callback",
    "https:evil.example/callback",
    "javascript:alert(1)//https://app.example.com/callback",
    "data:text/html,<script>alert(1)</script>",
    " https://app.example.com/callback",
    "https://app.example.com/callback ",
    "https://app.example.com/callback\r\nLocation: https://evil.example/",
    "HTTPS://evil.example/callback",
    "",
];

/// Refused (no Location), or a Location on the registered callback only.
fn safe(location: Option<&str>, variant: &str) {
    let Some(location) = location else { return };
    let url = url::Url::parse(location).unwrap_or_else(|_| panic!("{variant:?} redirected to a non-URL {location:?}"));
    assert_eq!(
        (url.scheme(), url.host_str(), url.port(), url.path(), url.username(), url.password()),
        ("https", Some("app.example.com"), None, "/callback", "", None),
        "{variant:?} redirected to {location}"
    );
}

async fn every_open_redirect_variant_is_refused(kind: Kind) {
    let app = stack(kind, |s| {
        s.magic_link.confirm = false;
        s.limits.start_per_ip = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
    })
    .await;
    for variant in VARIANTS {
        for client in ["public-app", "spa-app", "web-app"] {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("client_id", client),
                    ("response_type", "code"),
                    ("redirect_uri", variant),
                    ("scope", "openid"),
                    ("state", "st"),
                    ("code_challenge", CHALLENGE),
                    ("code_challenge_method", "S256"),
                ])
                .finish();
            let r = app.http.get(format!("{}/authorize?{q}", app.base)).send().await.unwrap();
            assert!(r.status().as_u16() < 500, "{variant:?}: {}", r.status());
            safe(r.headers().get("location").and_then(|l| l.to_str().ok()), variant);
            // No redirect_uri at all means the registered one (checked by `safe`).
            if !variant.is_empty() {
                assert!(r.status().is_client_error(), "/authorize with {variant:?} for {client}: {}", r.status());
            }
        }
        let start = app
            .post_start(&json!({"client_id": "public-app", "connection": "email", "email": "redir@example.com", "send": "link",
                "authParams": {"response_type": "code", "redirect_uri": variant, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}}))
            .await;
        assert_eq!(start.status, 400, "a link start with {variant:?}: {}", start.body);
    }

    // A genuine link, its redirect_uri swapped for each variant after it was sent.
    let email = "swap@example.com";
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": email, "send": "link",
            "authParams": {"response_type": "code", "redirect_uri": CALLBACK, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = app.mailbox(email, 1).await[0]["link"].as_str().unwrap().replacen(
        crate::helpers::ISSUER,
        &format!("{}/", app.base),
        1,
    );
    let mut parsed = url::Url::parse(&link).unwrap();
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    assert!(
        pairs.iter().any(|(k, v)| k == "redirect_uri" && v == CALLBACK),
        "the link carries its redirect_uri: {link}"
    );
    for variant in VARIANTS {
        parsed.query_pairs_mut().clear().extend_pairs(
            pairs.iter().map(
                |(k, v)| {
                    if k == "redirect_uri" { (k.as_str(), *variant) } else { (k.as_str(), v.as_str()) }
                },
            ),
        );
        let r = app.http.get(parsed.as_str()).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{variant:?}: {}", r.status());
        safe(r.headers().get("location").and_then(|l| l.to_str().ok()), variant);
    }
    // The tampered tries count as failed tries on that link (whoever holds a link can spend it
    // anyway); a fresh genuine link still completes to the registered callback.
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": email, "send": "link",
            "authParams": {"response_type": "code", "redirect_uri": CALLBACK, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = app.mailbox(email, 2).await[0]["link"].as_str().unwrap().replacen(
        crate::helpers::ISSUER,
        &format!("{}/", app.base),
        1,
    );
    let r = app.http.get(&link).send().await.unwrap();
    let location = r.headers().get("location").expect("the genuine link redirects").to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{CALLBACK}?code=")), "{location}");
}
on_both!(open_redirect_variants_case, every_open_redirect_variant_is_refused);
