//! The message language: `wire::request_language` (the `x-request-language` header, else
//! `Accept-Language`) into the templates' choice (`Templates::render_email` / `render_sms`).
//!
//! Input: `x-request-language` NUL `Accept-Language` (no NUL: `Accept-Language` only).
//!
//! Properties:
//! - the value taken is trimmed, at most 256 bytes, free of control characters, and is
//!   `x-request-language` whenever that one is usable;
//! - the language chosen is always one a template exists for (for this connection and client),
//!   never one scoped to another client;
//! - for a well-formed header (RFC 9110 §12.5.4 language ranges with q-values), the choice is the
//!   model's: highest q first (ties in the order given), `q=0` never, exact tag or its primary
//!   subtag, else the default.
#![no_main]

use std::sync::LazyLock;

use actix_web::test::TestRequest;
use libfuzzer_sys::fuzz_target;
use sesame_flows::templates::{EmailTemplate, MessageContext, TemplateSettings, Templates};

static TEMPLATES: LazyLock<Templates> = LazyLock::new(|| {
    let email = |connection: Option<&str>, client: Option<&str>, language: &str| EmailTemplate {
        connection: connection.map(str::to_owned),
        client_id: client.map(str::to_owned),
        language: language.into(),
        subject: "{{ code }}".into(),
        text: "{{ code }}".into(),
        html: None,
    };
    Templates::compile(&TemplateSettings {
        default_language: None,
        email: vec![email(Some("email"), None, "pt-BR"), email(None, Some("vip"), "ja")],
        sms: Vec::new(),
    })
    .expect("templates")
});

const EMAIL_LANGS: &[&str] = &["de", "en", "es", "fr", "pt-br"];
const SMS_LANGS: &[&str] = &["de", "en", "es", "fr"];

fn ctx<'a>(lang: Option<&'a str>, email: bool) -> MessageContext<'a> {
    MessageContext {
        code: "123456",
        link: "https://sesame.test/passwordless/verify_redirect?x=1",
        send: "code",
        request_language: lang,
        connection: if email { "email" } else { "sms" },
        application: "App",
        email: email.then_some("jane@example.com"),
        phone_number: (!email).then_some("+14155552671"),
        minutes: 5,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = sesame_fuzz::text(data) else { return };
    let (x_lang, accept) = input.split_once('\0').map_or((None, input), |(x, a)| (Some(x), a));
    let mut req = TestRequest::default();
    let usable = |v: &str| actix_web::http::header::HeaderValue::from_str(v).is_ok_and(|h| h.to_str().is_ok());
    if usable(accept) {
        req = req.insert_header(("accept-language", accept));
    }
    if let Some(x) = x_lang.filter(|x| usable(x)) {
        req = req.insert_header(("x-request-language", x));
    }
    let taken = sesame_api::wire::request_language(&req.to_http_request());
    if let Some(v) = &taken {
        assert!(v.len() <= 256 && v.trim() == v && !v.is_empty(), "{v:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
        let x_ok = x_lang
            .filter(|x| usable(x))
            .map(str::trim)
            .filter(|x| !x.is_empty() && x.len() <= 256 && !x.chars().any(char::is_control));
        if let Some(x) = x_ok {
            assert_eq!(v, x, "x-request-language is usable but not taken");
        }
    }
    // The header as a start hands it to the templates (bounded by `request_language`), and the
    // raw input too (the flows take any string).
    for lang in [taken.as_deref(), Some(accept).filter(|a| a.len() <= 1024)] {
        let t = &*TEMPLATES;
        let other = t.render_email("other", &ctx(lang, true)).expect("email renders").language;
        assert!(EMAIL_LANGS.contains(&other.as_str()), "email language {other:?} for {lang:?}");
        let vip = t.render_email("vip", &ctx(lang, true)).expect("email renders").language;
        assert!(EMAIL_LANGS.contains(&vip.as_str()) || vip == "ja", "vip language {vip:?} for {lang:?}");
        let sms = t.render_sms("other", &ctx(lang, false)).expect("sms renders").language;
        assert!(SMS_LANGS.contains(&sms.as_str()), "sms language {sms:?} for {lang:?}");
        if let Some(expected) = lang.and_then(|l| model(l, EMAIL_LANGS)) {
            assert_eq!(other, expected, "email language for {lang:?}");
        }
        if let Some(expected) = lang.and_then(|l| model(l, SMS_LANGS)) {
            assert_eq!(sms, expected, "sms language for {lang:?}");
        }
    }
});

/// The language a well-formed header should get; `None` when the header is not well-formed
/// (then only the properties above hold).
fn model(raw: &str, available: &[&str]) -> Option<String> {
    let mut ranges: Vec<(String, u32)> = Vec::new();
    for entry in raw.split(',') {
        let entry = entry.trim_matches(' ');
        let (tag, q) = match entry.split_once(';') {
            None => (entry, 1000),
            Some((tag, param)) => (tag.trim_matches(' '), qvalue(param.trim_matches(' '))?),
        };
        if !(tag == "*" || language_range(tag)) {
            return None;
        }
        ranges.push((tag.to_ascii_lowercase(), q));
    }
    ranges.sort_by(|a, b| b.1.cmp(&a.1));
    for (tag, q) in ranges {
        if q == 0 || tag == "*" {
            continue;
        }
        let primary = tag.split('-').next().unwrap_or_default();
        if let Some(found) = available.iter().find(|a| **a == tag).or_else(|| available.iter().find(|a| **a == primary))
        {
            return Some((*found).to_owned());
        }
    }
    Some("en".to_owned())
}

fn language_range(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or_default();
    (1..=8).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `q=` value in thousandths (RFC 9110 `qvalue`).
fn qvalue(param: &str) -> Option<u32> {
    let v = param.strip_prefix("q=")?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u32 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}
