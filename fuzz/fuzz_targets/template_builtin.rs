//! The built-in message templates (en, fr, de, es) with every variable fuzzed: what a start
//! renders, where `user.email`, `application.name`, `connection.name`, the language and the link's
//! parameters come from clients and configuration.
//!
//! Input: NUL-separated `send`, `request_language`, `application`, `connection`, `email`,
//! `phone_number`, `code`, `link`, `minutes`; an empty `email` means an SMS.
//!
//! Properties:
//! - the built-in templates render for any values (they are only test-rendered at load);
//! - the HTML part escapes every value: its markup (`<`, `>`, `"`, `'`) is the same as with
//!   harmless values, and each value appears escaped;
//! - the text part holds the code as given; the subject is one line without control characters;
//! - the language is a shipped one.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sesame_flows::templates::{MessageContext, Templates, escape_html};

static BUILTIN: LazyLock<Templates> = LazyLock::new(Templates::builtin);
const LANGS: &[&str] = &["de", "en", "es", "fr"];

fn markup(html: &str) -> [usize; 4] {
    [b'<', b'>', b'"', b'\''].map(|c| html.bytes().filter(|b| *b == c).count())
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = sesame_fuzz::text(data) else { return };
    let f = sesame_fuzz::fields(input, 9);
    let minutes = f[8].trim().parse::<u64>().unwrap_or(5);
    let ctx = MessageContext {
        send: f[0],
        request_language: Some(f[1]).filter(|l| !l.is_empty()),
        application: f[2],
        connection: f[3],
        email: Some(f[4]).filter(|e| !e.is_empty()),
        phone_number: Some(f[5]).filter(|p| !p.is_empty()),
        code: f[6],
        link: f[7],
        minutes,
    };
    let t = &*BUILTIN;
    if ctx.email.is_some() {
        let r = t.render_email("client", &ctx).unwrap_or_else(|e| panic!("built-in email does not render: {e}"));
        assert!(LANGS.contains(&r.language.as_str()), "{}", r.language);
        assert!(r.text.contains(ctx.code), "the text part lost the code");
        let subject = r.subject.as_deref().unwrap_or_default();
        assert!(!subject.chars().any(char::is_control), "control character in the subject {subject:?}");
        assert_eq!(subject.trim(), subject);
        let html = r.html.as_deref().expect("the built-in email has an HTML part");
        // The same message with harmless values: only the values may differ, never the markup.
        let plain = MessageContext {
            application: "App",
            connection: "email",
            email: Some("jane@example.com"),
            phone_number: None,
            code: "123456",
            link: "https://sesame.test/x",
            request_language: Some(r.language.as_str()),
            ..ctx.clone()
        };
        let reference = t.render_email("client", &plain).expect("renders");
        assert_eq!(
            markup(html),
            markup(reference.html.as_deref().unwrap_or_default()),
            "a value changed the HTML markup: {html}"
        );
        assert!(html.contains(&escape_html(ctx.code)), "the HTML part lost the code");
        if ctx.send != "code" {
            assert!(html.contains(&escape_html(ctx.link)), "the HTML part lost the link");
        }
        if !ctx.application.is_empty() {
            assert!(html.contains(&escape_html(ctx.application)), "the HTML part lost the application name");
        }
    } else {
        let r = t.render_sms("client", &ctx).unwrap_or_else(|e| panic!("built-in SMS does not render: {e}"));
        assert!(LANGS.contains(&r.language.as_str()), "{}", r.language);
        assert!(r.text.contains(ctx.code.trim()), "the SMS lost the code");
        assert_eq!(r.text.trim(), r.text);
    }
});
