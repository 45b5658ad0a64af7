//! Configured message templates (Liquid, `[[templates.email]]` / `[[templates.sms]]`), compiled
//! as at start-up, then rendered with fuzzed values.
//!
//! Input: NUL-separated email subject, email text, email HTML, SMS text (templates), then
//! `application`, `email`, `code`, `link`, `send`, `minutes` (values).
//!
//! Properties:
//! - compiling and rendering never panic;
//! - a template set that compiles renders with the values it was test-rendered with (the
//!   promise of `Templates::compile`: a template that loads does not fail at a login);
//! - rendering is deterministic;
//! - the subject is one line without control characters, the SMS trimmed;
//! - in an HTML template without tags and filters (only `{{ variable }}` outputs), values
//!   cannot change the markup: every value is escaped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_flows::templates::{EmailTemplate, MessageContext, SmsTemplate, TemplateSettings, Templates};

fn markup(html: &str) -> [usize; 4] {
    [b'<', b'>', b'"', b'\''].map(|c| html.bytes().filter(|b| *b == c).count())
}

/// The values `Templates::compile` test-renders with.
fn sample(send: &'static str, email: bool) -> MessageContext<'static> {
    MessageContext {
        code: "123456",
        link: "https://auth.example.com/passwordless/verify_redirect?verification_code=x&connection=email",
        send,
        request_language: Some("en"),
        connection: "email",
        application: "App",
        email: email.then_some("user@example.com"),
        phone_number: (!email).then_some("+14155552671"),
        minutes: 3,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = sesame_fuzz::text(data) else { return };
    let f = sesame_fuzz::fields(input, 10);
    if f[..4].iter().any(|t| t.len() > 2048) {
        return;
    }
    let settings = TemplateSettings {
        default_language: None,
        email: vec![EmailTemplate {
            connection: None,
            client_id: None,
            language: "en".into(),
            subject: f[0].into(),
            text: f[1].into(),
            html: Some(f[2].into()).filter(|h: &String| !h.is_empty()),
        }],
        sms: vec![SmsTemplate { connection: None, client_id: None, language: "en".into(), text: f[3].into() }],
    };
    let Ok(t) = Templates::compile(&settings) else { return };

    for send in ["code", "link"] {
        let r = t.render_email("c", &sample(send, true)).unwrap_or_else(|e| panic!("loaded, then fails: {e}"));
        let s = r.subject.as_deref().unwrap_or_default();
        assert!(!s.chars().any(char::is_control) && s.trim() == s, "subject {s:?}");
        let sms = t
            .render_sms("c", &MessageContext { connection: "sms", ..sample(send, false) })
            .unwrap_or_else(|e| panic!("loaded, then fails: {e}"));
        assert_eq!(sms.text.trim(), sms.text);
    }

    let minutes = f[9].trim().parse::<u64>().unwrap_or(5);
    let ctx = MessageContext {
        application: f[4],
        email: Some(f[5]),
        code: f[6],
        link: f[7],
        send: if f[8].is_empty() { "code" } else { f[8] },
        minutes,
        ..sample("code", true)
    };
    let first = t.render_email("c", &ctx);
    let second = t.render_email("c", &ctx);
    // Errors compared by message (their Debug carries a backtrace).
    let shown = |r: &anyhow::Result<sesame_flows::templates::Rendered>| match r {
        Ok(r) => format!("{r:?}"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(shown(&first), shown(&second), "rendering is not deterministic");
    if let Ok(r) = &first {
        let s = r.subject.as_deref().unwrap_or_default();
        assert!(!s.chars().any(char::is_control) && s.trim() == s, "subject {s:?}");
        let html = f[2];
        if !html.is_empty() && !html.contains("{%") && !html.contains('|') {
            let plain = MessageContext {
                application: "App",
                email: Some("jane@example.com"),
                code: "123456",
                link: "https://sesame.test/x",
                ..ctx.clone()
            };
            if let (Some(got), Ok(reference)) = (&r.html, t.render_email("c", &plain)) {
                let reference = reference.html.unwrap_or_default();
                assert_eq!(markup(got), markup(&reference), "a value changed the HTML markup: {got}");
            }
        }
    }
    let sms = t.render_sms("c", &MessageContext { connection: "sms", email: None, phone_number: Some(f[5]), ..ctx });
    if let Ok(sms) = sms {
        assert_eq!(sms.text.trim(), sms.text);
    }
});
