//! The hosted login page behind `GET /authorize`, driven over HTTP as a browser would: cookies
//! kept by a tiny jar (the test issuer is https, so a real jar would keep `Secure` cookies
//! from an http test server to itself), forms read from the HTML.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::{ISSUER, TestApp, spawn_app, spawn_app_configured};
use crate::links::{CALLBACK, CHALLENGE, VERIFIER, params_after, query_of};

const CHROME_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// One browser: its cookies and its User-Agent.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: HashMap<String, String>,
    agent: &'static str,
}

/// A page as the browser got it.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// The hidden and named inputs of the form posting to `action`.
    fn form(&self, action: &str) -> Vec<(String, String)> {
        let start = self
            .html
            .find(&format!("action=\"{action}\""))
            .unwrap_or_else(|| panic!("no form for {action}: {}", self.html));
        let rest = &self.html[start..];
        let form = &rest[..rest.find("</form>").expect("form end")];
        let mut out = Vec::new();
        for input in form.split("<input").skip(1) {
            let attr = |name: &str| {
                let key = format!("{name}=\"");
                input.find(&key).map(|i| {
                    let v = &input[i + key.len()..];
                    unescape(&v[..v.find('"').expect("quote")])
                })
            };
            if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
                out.push((n, v));
            }
        }
        out
    }

    fn alert(&self) -> Option<String> {
        let i = self.html.find("role=\"alert\">")?;
        let rest = &self.html[i + 13..];
        Some(unescape(&rest[..rest.find('<')?]))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, cookies: HashMap::new(), agent: CHROME_LINUX }
    }

    fn keep(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().expect("ascii");
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax") && attrs.contains("Path=/"), "{v}");
            assert!(attrs.contains("Secure"), "an https issuer's cookies are Secure: {v}");
            assert!(name.starts_with("__Host-"), "an https issuer's cookies are __Host- prefixed: {v}");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let resp =
            req.header("cookie", self.cookie_header()).header("user-agent", self.agent).send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.keep(&headers);
        Page { status, headers, html: resp.text().await.expect("body") }
    }

    async fn get(&mut self, url: &str) -> Page {
        let url = if url.starts_with("http") { url.to_owned() } else { format!("{}{url}", self.app.base) };
        let req = self.app.http.get(url);
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(String, String)]) -> Page {
        let req = self.app.http.post(format!("{}{path}", self.app.base)).form(form);
        self.send(req).await
    }
}

fn authorize_url(extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("client_id", "public-app"),
        ("response_type", "code"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid email"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ] {
        if !extra.iter().any(|(ek, _)| *ek == k) {
            q.append_pair(k, v);
        }
    }
    for (k, v) in extra {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    format!("/authorize?{}", q.finish())
}

fn with(mut form: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    form.retain(|(k, _)| k != name);
    form.push((name.to_owned(), value.to_owned()));
    form
}

/// Up to the code page for `email`; returns it.
async fn to_code_page(b: &mut Browser<'_>, email: &str) -> Page {
    let first = b.get(&authorize_url(&[])).await;
    assert_eq!(first.status, 200, "{}", first.html);
    let page = b.post("/u/start", &with(first.form("/u/start"), "identifier", email)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    page
}

async fn code_of(app: &TestApp, email: &str) -> String {
    app.mailbox(email, 1).await[0]["code"].as_str().expect("code").to_owned()
}

async fn link_of(app: &TestApp, email: &str) -> String {
    let link = app.mailbox(email, 1).await[0]["link"].as_str().expect("link").to_owned();
    link.replacen(ISSUER, &format!("{}/", app.base), 1)
}

async fn exchange(app: &TestApp, code: &str) -> crate::helpers::Reply {
    app.post_token(&json!({"grant_type": "authorization_code", "client_id": "public-app", "code": code, "redirect_uri": CALLBACK, "code_verifier": VERIFIER}))
        .await
}

#[tokio::test]
async fn a_code_login_through_the_page_ends_at_the_app_with_a_code_for_tokens() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let first = b.get(&authorize_url(&[("login_hint", "hint@example.com")])).await;
    assert_eq!(first.status, 200);
    let csp = first.headers["content-security-policy"].to_str().expect("csp");
    for part in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self' https://app.example.com",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(first.headers["cache-control"], "no-store");
    assert!(first.html.contains("value=\"hint@example.com\""), "login_hint fills the field");
    assert!(first.html.contains("<label for=\"identifier\">"), "labelled input");
    assert!(b.cookies.contains_key("__Host-sesame_csrf"));

    let code_page = b.post("/u/start", &with(first.form("/u/start"), "identifier", "Page.User@Example.com")).await;
    assert_eq!(code_page.status, 200, "{}", code_page.html);
    assert!(
        code_page.html.contains("autocomplete=\"one-time-code\"") && code_page.html.contains("inputmode=\"numeric\"")
    );
    assert!(code_page.html.contains("page.user@example.com"), "the address as normalised");
    assert!(b.cookies.contains_key("__Host-sesame_login"));
    let code = code_of(&app, "page.user@example.com").await;

    let wrong = b.post("/u/verify", &with(code_page.form("/u/verify"), "code", "000000")).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.alert().as_deref(), Some("That code is not right. Check it and try again."));
    assert!(wrong.html.contains("aria-invalid=\"true\""), "the error is tied to the field");

    let done = b.post("/u/verify", &with(wrong.form("/u/verify"), "code", &code)).await;
    assert_eq!(done.status, 302, "{}", done.html);
    let loc = done.headers["location"].to_str().expect("location").to_owned();
    assert!(loc.starts_with(&format!("{CALLBACK}?")), "{loc}");
    let p = params_after(&loc, '?');
    assert_eq!(p["state"], "st-1");
    assert!(b.cookies.contains_key("__Host-sesame_session"), "signed in");
    assert!(!b.cookies.contains_key("__Host-sesame_login"), "the pending login is over");

    let tokens = exchange(&app, &p["code"]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let claims = app.verify_jwt(tokens.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert_eq!((claims["nonce"].as_str(), claims["email"].as_str()), (Some("n-1"), Some("page.user@example.com")));
    // The code is spent with the login.
    let again = b.post("/u/verify", &with(wrong.form("/u/verify"), "code", &code)).await;
    assert_eq!(again.status, 400, "no pending login any more");
}

#[tokio::test]
async fn untrusted_requests_get_an_error_page_and_bad_ones_go_back_to_the_app() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    for (extra, text) in [
        (vec![("client_id", "nobody")], "unknown application"),
        (vec![("redirect_uri", "https://evil.example/callback")], "not a registered callback"),
    ] {
        let page = b.get(&authorize_url(&extra)).await;
        assert_eq!(page.status, 400, "{extra:?}");
        assert!(page.headers.get("location").is_none(), "never redirected to");
        assert!(page.html.contains(text), "{}", page.html);
    }
    let no_pkce = b.get(&authorize_url(&[("code_challenge", ""), ("code_challenge_method", "")])).await;
    assert_eq!(no_pkce.status, 302);
    let p = params_after(no_pkce.headers["location"].to_str().expect("location"), '?');
    assert_eq!((p["error"].as_str(), p["state"].as_str()), ("invalid_request", "st-1"));
    assert!(p["error_description"].contains("PKCE"), "{p:?}");

    let none = b.get(&authorize_url(&[("prompt", "none")])).await;
    assert_eq!(none.status, 302, "prompt=none without a session");
    assert_eq!(params_after(none.headers["location"].to_str().expect("location"), '?')["error"], "login_required");
}

#[tokio::test]
async fn every_post_needs_the_csrf_token_of_its_browser_and_a_same_origin() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let first = b.get(&authorize_url(&[])).await;
    let form = with(first.form("/u/start"), "identifier", "csrf@example.com");

    let mut stranger = Browser::new(&app);
    let forged = stranger.post("/u/start", &form).await;
    assert_eq!(forged.status, 403, "another browser's token (no cookie)");
    let wrong = b.post("/u/start", &with(form.clone(), "csrf", "forged-token-forged-token")).await;
    assert_eq!(wrong.status, 403, "a token that is not the cookie's");
    assert_eq!(wrong.alert().as_deref(), Some("This page has expired. Please start again."));
    let req = app.http.post(format!("{}/u/start", app.base)).header("origin", "https://evil.example").form(&form);
    let cross = b.send(req).await;
    assert_eq!(cross.status, 403, "a cross-origin post");
    let mail: Vec<Value> = app
        .http
        .get(format!("{}/dev/mailbox?to=csrf@example.com", app.base))
        .send()
        .await
        .expect("mailbox")
        .json()
        .await
        .expect("json");
    assert!(mail.is_empty(), "nothing was sent: {mail:?}");

    let ok = b.post("/u/start", &form).await;
    assert_eq!(ok.status, 200, "{}", ok.html);
}

#[tokio::test]
async fn a_signed_in_browser_skips_the_code_until_it_logs_out() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let page = to_code_page(&mut b, "sso@example.com").await;
    let code = code_of(&app, "sso@example.com").await;
    let done = b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await;
    assert_eq!(done.status, 302);

    let second = b.get(&authorize_url(&[("state", "st-2")])).await;
    assert_eq!(second.status, 302, "single sign-on: {}", second.html);
    let p = params_after(second.headers["location"].to_str().expect("location"), '?');
    assert_eq!(p["state"], "st-2");
    let tokens = exchange(&app, &p["code"]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let claims = app.verify_jwt(tokens.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert_eq!(claims["email"], "sso@example.com");
    assert_eq!(b.get(&authorize_url(&[("prompt", "none")])).await.status, 302);
    assert_eq!(b.get(&authorize_url(&[("prompt", "login")])).await.status, 200, "prompt=login asks again");

    let out = b.get("/v2/logout").await;
    assert_eq!(out.status, 200);
    assert!(!b.cookies.contains_key("__Host-sesame_session"), "logout clears the session");
    assert_eq!(b.get(&authorize_url(&[])).await.status, 200, "the page again");
    let none = b.get(&authorize_url(&[("prompt", "none")])).await;
    assert_eq!(params_after(none.headers["location"].to_str().expect("location"), '?')["error"], "login_required");
}

#[tokio::test]
async fn with_remember_login_off_every_authorize_asks_for_a_code() {
    let app = spawn_app_configured(|s| s.hosted.remember_login = false).await;
    let mut b = Browser::new(&app);
    let page = to_code_page(&mut b, "forget@example.com").await;
    let code = code_of(&app, "forget@example.com").await;
    assert_eq!(b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await.status, 302);
    assert!(!b.cookies.contains_key("__Host-sesame_session"));
    assert_eq!(b.get(&authorize_url(&[])).await.status, 200);
}

#[tokio::test]
async fn a_link_opened_in_the_same_browser_signs_it_in_and_the_waiting_page_continues() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let waiting = to_code_page(&mut b, "same@example.com").await;
    assert_eq!(b.get("/u/status").await.html, r#"{"approved":false}"#);
    let early = b.post("/u/continue", &waiting.form("/u/continue")).await;
    assert_eq!(early.status, 200);
    assert!(early.alert().is_some_and(|a| a.contains("not been opened")), "{:?}", early.alert());

    let link = link_of(&app, "same@example.com").await;
    let opened = b.get(&link).await;
    assert_eq!(opened.status, 200, "{}", opened.html);
    assert!(opened.html.contains("You are signed in"), "{}", opened.html);
    assert_eq!(b.get("/u/status").await.html, r#"{"approved":true}"#);

    let done = b.post("/u/continue", &waiting.form("/u/continue")).await;
    assert_eq!(done.status, 302, "{}", done.html);
    let p = params_after(done.headers["location"].to_str().expect("location"), '?');
    assert_eq!(p["state"], "st-1");
    assert_eq!(exchange(&app, &p["code"]).await.status, 200);
    assert!(b.cookies.contains_key("__Host-sesame_session"));
    // The link is spent: this browser's login is over, so it is asked to confirm, and then told.
    let form: Vec<(String, String)> = query_of(&link).into_iter().collect();
    let again = b.post("/passwordless/verify_redirect", &form).await;
    assert_eq!(again.status, 400, "{}", again.html);
    assert!(again.alert().is_some_and(|a| a.contains("expired")), "{:?}", again.alert());
}

#[tokio::test]
async fn a_link_opened_on_another_device_asks_first_and_signs_in_the_browser_that_asked() {
    let app = spawn_app().await;
    let mut asker = Browser::new(&app);
    let waiting = to_code_page(&mut asker, "other@example.com").await;
    let link = link_of(&app, "other@example.com").await;

    let mut phone = Browser::new(&app);
    phone.agent =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1";
    for _ in 0..2 {
        let ask = phone.get(&link).await;
        assert_eq!(ask.status, 200);
        assert!(ask.html.contains("id=\"requested-by\">Chrome on Linux</strong>"), "{}", ask.html);
    }
    assert_eq!(asker.get("/u/status").await.html, r#"{"approved":false}"#, "a GET approves nothing");

    let confirm_form: Vec<(String, String)> = query_of(&link).into_iter().collect();
    let approved = phone.post("/passwordless/verify_redirect", &confirm_form).await;
    assert_eq!(approved.status, 200, "{}", approved.html);
    assert!(approved.html.contains("Sign-in approved"), "{}", approved.html);
    assert!(!phone.cookies.contains_key("__Host-sesame_session"), "no session on the device that clicked");

    let done = asker.post("/u/continue", &waiting.form("/u/continue")).await;
    assert_eq!(done.status, 302, "{}", done.html);
    let p = params_after(&location_of(&done), '?');
    assert_eq!(exchange(&app, &p["code"]).await.status, 200, "PKCE of the browser that asked");
    assert!(asker.cookies.contains_key("__Host-sesame_session"));
}

fn location_of(page: &Page) -> String {
    page.headers["location"].to_str().expect("location").to_owned()
}

#[tokio::test]
async fn expired_and_exhausted_codes_start_over_with_a_readable_error() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let page = to_code_page(&mut b, "late@example.com").await;
    let code = code_of(&app, "late@example.com").await;
    app.clock.advance(std::time::Duration::from_secs(1800));
    let late = b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await;
    assert_eq!(late.status, 400);
    assert!(
        late.html.contains("action=\"/u/start\"") || late.alert().is_some_and(|a| a.contains("expired")),
        "{}",
        late.html
    );
}

#[tokio::test]
async fn the_page_speaks_the_language_asked_for_and_wears_the_clients_brand() {
    let app = spawn_app_configured(|s| {
        s.hosted.branding = vec![
            serde_json::from_value(json!({
                "client_id": "public-app", "name": "Acme Portal", "logo_url": "https://cdn.acme.example/logo.png",
                "primary_color": "#ff6600", "background_color": "#001122"
            }))
            .expect("branding"),
        ];
    })
    .await;
    let mut b = Browser::new(&app);
    let fr = b.get(&authorize_url(&[("ui_locales", "fr-CA en")])).await;
    assert!(fr.html.contains("<html lang=\"fr\">") && fr.html.contains("Connexion à Acme Portal"), "{}", fr.html);
    assert!(fr.html.contains("#ff6600") && fr.html.contains("#001122"));
    assert!(fr.html.contains("src=\"https://cdn.acme.example/logo.png\""));
    let csp = fr.headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("img-src https://cdn.acme.example;"), "{csp}");

    let req = app
        .http
        .get(format!("{}{}", app.base, authorize_url(&[])))
        .header("accept-language", "de-DE,de;q=0.9,en;q=0.5");
    let de = b.send(req).await;
    assert!(de.html.contains("<html lang=\"de\">") && de.html.contains("Anmelden bei Acme Portal"), "{}", de.html);
    // The message goes out in the page's language.
    let page = b.post("/u/start", &with(fr.form("/u/start"), "identifier", "fr@example.com")).await;
    assert!(page.html.contains("Consultez vos e-mails"));
    let mail = app.mailbox("fr@example.com", 1).await;
    assert!(mail[0]["text"].as_str().is_some_and(|t| t.contains("Ouvrez ce lien")), "{}", mail[0]);
}

#[tokio::test]
async fn oidc_logout_checks_where_it_goes_and_returns_the_state() {
    let app = spawn_app_configured(|s| {
        for c in &mut s.clients {
            c.allowed_logout_urls = vec!["https://app.example.com/bye".into()];
        }
    })
    .await;
    let mut b = Browser::new(&app);
    let bad = b.get("/oidc/logout?client_id=public-app&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F").await;
    assert_eq!(bad.status, 400);
    let ok = b.get("/oidc/logout?client_id=public-app&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye&state=s%201").await;
    assert_eq!(ok.status, 302);
    assert_eq!(location_of(&ok), "https://app.example.com/bye?state=s%201");

    // The client from a valid id_token_hint.
    let page = to_code_page(&mut b, "bye@example.com").await;
    let code = code_of(&app, "bye@example.com").await;
    let done = b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await;
    let tokens = exchange(&app, &params_after(&location_of(&done), '?')["code"]).await;
    let hint = tokens.body["id_token"].as_str().expect("id_token");
    let out = b
        .get(&format!("/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye"))
        .await;
    assert_eq!(out.status, 302, "{}", out.html);
    assert!(!b.cookies.contains_key("__Host-sesame_session"));
}

#[tokio::test]
async fn discovery_lists_what_is_supported_and_the_mailbox_is_a_page_for_browsers() {
    let app = spawn_app().await;
    let d = app.get("/.well-known/openid-configuration").await.body;
    assert_eq!(d["authorization_endpoint"], format!("{ISSUER}authorize"));
    assert_eq!(d["end_session_endpoint"], format!("{ISSUER}oidc/logout"));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert!(d["response_modes_supported"].as_array().is_some_and(|m| m.contains(&json!("form_post"))));
    assert!(
        d["token_endpoint_auth_methods_supported"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("client_secret_basic")) && m.contains(&json!("private_key_jwt")))
    );

    let mut b = Browser::new(&app);
    to_code_page(&mut b, "box@example.com").await;
    app.mailbox("box@example.com", 1).await;
    let req =
        app.http.get(format!("{}/dev/mailbox", app.base)).header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    let page = b.send(req).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].to_str().expect("ct").starts_with("text/html"));
    assert!(
        page.html.contains("box@example.com")
            && page.html.contains("<a href=\"https://sesame.test/passwordless/verify_redirect?"),
        "{}",
        page.html
    );
}

#[tokio::test]
async fn a_blocked_user_is_refused_by_the_page() {
    let app = spawn_app_configured(crate::management::with_backends).await;
    let mut b = Browser::new(&app);
    let page = to_code_page(&mut b, "blocked@example.com").await;
    let code = code_of(&app, "blocked@example.com").await;
    let done = b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await;
    assert_eq!(done.status, 302);
    let token = crate::management::m2m_token(&app, "backend").await;
    let user = app
        .http
        .get(format!("{}/api/v2/users-by-email?email=blocked@example.com", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json");
    let id = user[0]["user_id"].as_str().expect("id");
    let r = app
        .http
        .patch(format!("{}/api/v2/users/{}", app.base, urlencode(id)))
        .bearer_auth(&token)
        .json(&json!({"blocked": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let again = b.get(&authorize_url(&[])).await;
    assert_eq!(again.status, 302, "the session of a blocked user answers the app with an error");
    assert_eq!(params_after(&location_of(&again), '?')["error"], "unauthorized");
    let first = b.get(&authorize_url(&[("prompt", "login")])).await;
    let refused = b.post("/u/start", &with(first.form("/u/start"), "identifier", "blocked@example.com")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.alert().as_deref(), Some("This account is blocked."));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn over_a_limit_the_page_says_to_wait_with_a_429() {
    use sesame_flows::limits::Rate;
    let app = spawn_app_configured(|s| {
        s.limits.start_per_ip = Rate { limit: 2, window_secs: 3600 };
        s.limits.exchange_per_ip = Rate { limit: 2, window_secs: 3600 };
    })
    .await;
    let mut b = Browser::new(&app);
    let page = to_code_page(&mut b, "limit@example.com").await;
    for _ in 0..2 {
        let wrong = b.post("/u/verify", &with(page.form("/u/verify"), "code", "000000")).await;
        assert_ne!(wrong.status, 429);
    }
    let limited = b.post("/u/verify", &with(page.form("/u/verify"), "code", "000000")).await;
    assert_eq!(limited.status, 429, "{}", limited.html);
    assert_eq!(limited.alert().as_deref(), Some("Too many attempts. Please wait a moment and try again."));

    let first = b.get(&authorize_url(&[("prompt", "login")])).await;
    let form = with(first.form("/u/start"), "identifier", "limit2@example.com");
    assert_eq!(b.post("/u/start", &form).await.status, 200, "the second start of this IP");
    let refused = b.post("/u/start", &form).await;
    assert_eq!(refused.status, 429, "{}", refused.html);
    assert_eq!(refused.alert().as_deref(), Some("Too many attempts. Please wait a moment and try again."));
}

#[tokio::test]
async fn a_session_answers_only_clients_whose_connections_take_its_user() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    // An SMS user of public-app, signed in…
    let first = b.get(&authorize_url(&[])).await;
    let page = b.post("/u/start", &with(first.form("/u/start"), "identifier", "+33612345678")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let code = code_of(&app, "+33612345678").await;
    assert_eq!(b.post("/u/verify", &with(page.form("/u/verify"), "code", &code)).await.status, 302);
    assert_eq!(b.get(&authorize_url(&[])).await.status, 302, "single sign-on for the same client");
    // …is asked to log in at a client that takes email only.
    let other = b.get(&authorize_url(&[("client_id", "email-only")])).await;
    assert_eq!(other.status, 200, "the page, not a code: {}", other.html);
    assert!(other.html.contains("action=\"/u/start\""));
}

#[tokio::test]
async fn an_approval_is_taken_once_and_max_age_zero_asks_again() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let waiting = to_code_page(&mut b, "once@example.com").await;
    let link = link_of(&app, "once@example.com").await;
    assert_eq!(b.get(&link).await.status, 200);
    let pending = b.cookies.get("__Host-sesame_login").cloned().expect("pending login");
    assert_eq!(b.post("/u/continue", &waiting.form("/u/continue")).await.status, 302);
    // The same pending login again (a copied cookie, a second tab): nothing more to take.
    b.cookies.insert("__Host-sesame_login".into(), pending);
    let again = b.post("/u/continue", &waiting.form("/u/continue")).await;
    assert_eq!(again.status, 200, "{}", again.html);
    assert!(again.alert().is_some_and(|a| a.contains("not been opened")), "{:?}", again.alert());
    assert_eq!(b.get(&authorize_url(&[])).await.status, 302, "signed in");
    assert_eq!(b.get(&authorize_url(&[("max_age", "0")])).await.status, 200, "max_age=0 asks again");
}

#[tokio::test]
async fn a_start_from_the_api_may_not_carry_the_pages_own_keys() {
    let app = spawn_app().await;
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": "x@example.com", "send": "link",
            "authParams": {"redirect_uri": CALLBACK, "response_type": "code", "code_challenge": CHALLENGE, "sesame_login": "someone-elses"}}))
        .await;
    r.assert_error(400, "bad.authParams", "error in authParams - keys starting with sesame_ are reserved");
}

#[tokio::test]
async fn a_hosted_link_stripped_of_its_binding_signs_nobody_in() {
    let app = spawn_app_configured(|s| s.magic_link.confirm = false).await;
    let mut b = Browser::new(&app);
    to_code_page(&mut b, "strip@example.com").await;
    let link = link_of(&app, "strip@example.com").await;
    let mut url = url::Url::parse(&link).expect("url");
    let kept: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "sesame_login").collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let mut stranger = Browser::new(&app);
    let done = stranger.get(url.as_str()).await;
    assert_eq!(done.status, 302);
    let p = params_after(&location_of(&done), '?');
    assert_eq!(p.get("error").map(String::as_str), Some("invalid_request"), "{p:?}");
    assert!(!p.contains_key("code"));
}
