//! `PhoneNumber::parse`: Auth0's `^\+[0-9]{1,15}$`, then the numbering plans (libphonenumber).
//!
//! Input: the submitted text.
//!
//! Properties:
//! - anything not matching the pattern is refused with `PhonePattern`;
//! - an accepted number's E.164 form matches the pattern and parses to the same number
//!   (same country, same costly kind): idempotence;
//! - its range is the E.164 form without the last two digits; `masked` hides at least one digit;
//! - satellite kinds are exactly the +870/+881/+882/+883 codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_domain::{CostlyKind, IdentifierError, PhoneNumber};

fn pattern(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fuzz_target!(|data: &[u8]| {
    let Some(raw) = sesame_fuzz::text(data) else { return };
    let parsed = PhoneNumber::parse(raw);
    if !pattern(raw) {
        assert_eq!(parsed, Err(IdentifierError::PhonePattern), "{raw:?}");
        return;
    }
    let Ok(phone) = parsed else { return };
    let e164 = phone.e164();
    assert!(pattern(e164), "E.164 form {e164:?} of {raw:?} breaks the pattern");
    let again = PhoneNumber::parse(e164).unwrap_or_else(|e| panic!("{e164:?} (from {raw:?}) does not parse: {e}"));
    assert_eq!(again, phone, "not idempotent: {raw:?} -> {e164:?}");
    assert_eq!(again.country(), phone.country());
    assert_eq!(again.costly_kind(), phone.costly_kind());

    let range = phone.range();
    assert!(
        e164.starts_with(range) && range.len() == (e164.len().saturating_sub(2)).max(2),
        "range {range:?} of {e164:?}"
    );
    // Logs carry identifiers only masked: at least one digit stays hidden.
    let masked = phone.masked();
    assert!(masked.contains("***"), "{masked:?}");
    let shown = masked.bytes().filter(u8::is_ascii_digit).count();
    assert!(shown < e164.len() - 1, "masked {masked:?} shows every digit of {e164:?}");
    let satellite = ["+870", "+881", "+882", "+883"].iter().any(|p| e164.starts_with(p));
    assert_eq!(phone.costly_kind() == Some(CostlyKind::Satellite), satellite, "{e164:?}");
});
