//! What may go into a mail header. SES builds the MIME message itself, but a subject or display
//! name with a line break would still end its header early and start another one (`Bcc: …`), so
//! such text is refused before SES sees it: defense in depth behind the template layer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// True when `text` holds nothing that could end a header line: no control characters (CR, LF,
/// NUL, tab, …; `char::is_control` covers C0, DEL and C1 with NEL) and no Unicode line or
/// paragraph separators.
pub(crate) fn is_header_safe(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// The `From` header value: the bare address, or `"Name" <address>`. A display name outside
/// printable ASCII becomes RFC 2047 encoded words, as SES requires.
///
/// # Errors
/// The reason, when the name is not header safe.
pub(crate) fn from_header(address: &str, name: Option<&str>) -> Result<String, String> {
    if name.is_some_and(|n| !is_header_safe(n)) {
        return Err("the From display name contains a control character or line break".to_owned());
    }
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(address.to_owned());
    };
    if name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        Ok(format!("\"{quoted}\" <{address}>"))
    } else {
        Ok(format!("{} <{address}>", encoded_words(name)))
    }
}

/// `=?UTF-8?B?…?=` words of at most 75 characters (RFC 2047 §2), split between characters.
fn encoded_words(text: &str) -> String {
    // 75 - len("=?UTF-8?B?") - len("?=") = 63 base64 characters, so 45 bytes of text per word.
    const MAX_BYTES: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > MAX_BYTES {
            words.push(&text[start..end]);
            start = i;
        }
        end = i + c.len_utf8();
    }
    words.push(&text[start..end]);
    words.iter().map(|w| format!("=?UTF-8?B?{}?=", STANDARD.encode(w))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_control_characters_are_not_header_safe() {
        for bad in [
            "a\r\nBcc: x@evil.example",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\tb",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}b",
        ] {
            assert!(!is_header_safe(bad), "{bad:?}");
        }
        assert!(is_header_safe("Votre code de connexion – Ünïcode ✓"));
    }

    #[test]
    fn without_a_name_the_from_is_the_bare_address() {
        assert_eq!(from_header("no-reply@example.com", None).unwrap(), "no-reply@example.com");
        assert_eq!(from_header("no-reply@example.com", Some("  ")).unwrap(), "no-reply@example.com");
    }

    #[test]
    fn an_ascii_name_is_quoted_and_escaped() {
        assert_eq!(from_header("a@example.com", Some("Example Login")).unwrap(), "\"Example Login\" <a@example.com>");
        assert_eq!(
            from_header("a@example.com", Some(r#"The "Best" \ Login"#)).unwrap(),
            r#""The \"Best\" \\ Login" <a@example.com>"#
        );
    }

    #[test]
    fn a_unicode_name_is_encoded() {
        assert_eq!(
            from_header("a@example.com", Some("Connexion Réseau")).unwrap(),
            "=?UTF-8?B?Q29ubmV4aW9uIFLDqXNlYXU=?= <a@example.com>"
        );
    }

    #[test]
    fn a_long_unicode_name_is_split_into_words_of_at_most_75_characters() {
        let name = "é".repeat(40);
        let header = from_header("a@example.com", Some(&name)).unwrap();
        let words: Vec<&str> = header.trim_end_matches(" <a@example.com>").split(' ').collect();
        assert_eq!(words.len(), 2, "{header}");
        let mut decoded = String::new();
        for word in words {
            assert!(word.len() <= 75, "{word}");
            let b64 = word.strip_prefix("=?UTF-8?B?").unwrap().strip_suffix("?=").unwrap();
            decoded.push_str(&String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap());
        }
        assert_eq!(decoded, name);
    }

    #[test]
    fn a_name_with_a_line_break_is_refused() {
        assert!(from_header("a@example.com", Some("Login\r\nBcc: victim@example.org")).is_err());
        assert!(from_header("a@example.com", Some("Login\n")).is_err());
    }
}
