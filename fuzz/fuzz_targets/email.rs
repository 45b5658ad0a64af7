//! `Email::parse`: the normalisation of every submitted address (start, token `username`).
//!
//! Input: the submitted text.
//!
//! Properties of an accepted address:
//! - normalising it again gives itself (idempotence), and so does its serde round trip;
//! - it is at most 254 bytes, with no control, invisible or surrounding white-space characters,
//!   no `"`, no upper case, one `@` before an ASCII (IDNA) domain with a dot, not ending in a dot;
//! - spaces around the input change nothing;
//! - `masked` and `local_part` do not panic and reveal at most the first character of the local part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_domain::Email;

fuzz_target!(|data: &[u8]| {
    let Some(raw) = sesame_fuzz::text(data) else { return };
    let Ok(email) = Email::parse(raw) else {
        return;
    };
    let s = email.as_str();
    assert_eq!(Email::parse(s).as_ref(), Ok(&email), "not idempotent: {raw:?} -> {s:?}");
    let json = serde_json::to_string(&email).unwrap();
    assert_eq!(serde_json::from_str::<Email>(&json).ok().as_ref(), Some(&email), "serde round trip of {s:?}");

    assert!(!s.is_empty() && s.len() <= 254, "{s:?}");
    assert_eq!(s.trim(), s, "surrounding white space in {s:?}");
    assert!(!s.chars().any(|c| c.is_control() || c == '"'), "control character or quote in {s:?}");
    assert!(!s.chars().any(|c| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')), "invisible character in {s:?}");
    assert_eq!(s.to_lowercase(), s, "upper case left in {s:?}");
    let (local, domain) = s.rsplit_once('@').expect("an @");
    assert!(!local.is_empty(), "empty local part in {s:?}");
    assert!(domain.is_ascii() && domain.contains('.') && !domain.ends_with('.'), "domain of {s:?}");
    assert_eq!(domain.to_ascii_lowercase(), domain, "domain of {s:?} not lower-case");
    assert_eq!(email.local_part(), local);

    let masked = email.masked();
    assert!(masked.ends_with(&format!("***@{domain}")), "{masked:?}");
    assert!(masked.chars().count() <= domain.chars().count() + 5, "masked {masked:?} reveals too much");

    if raw.len() <= 1000 {
        let padded = format!("  {raw}\t");
        assert_eq!(Email::parse(&padded).as_ref(), Ok(&email), "spaces around {raw:?} change the address");
    }
});
