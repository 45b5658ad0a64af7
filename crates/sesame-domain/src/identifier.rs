use std::fmt;

/// Why a submitted email address or phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("email format validation failed")]
    BadEmail,
    /// The string is not `^\+[0-9]{1,15}$`, Auth0's rule.
    #[error("phone number does not match ^\\+[0-9]{{1,15}}$")]
    PhonePattern,
    /// The string has the right shape but is no dialable number in any country plan.
    #[error("phone number is not valid in any numbering plan")]
    PhoneNotDialable,
}

/// A normalised email address: trimmed, lower-cased, validated (RFC 5322 addr-spec via
/// `email_address`), without control characters, so it is safe in a mail header.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and normalises a submitted address: NFKC (so full-width `ｊane＠…` is `jane@…`),
    /// trimmed, refused if it holds an invisible formatting character (a zero-width space makes
    /// a second spelling that looks the same), the local part lower-cased, the domain
    /// mapped by IDNA (UTS 46) to lower-case ASCII (punycode), so `jane@exａmple.com`,
    /// `Jane@EXAMPLE.com` and `jane@example.com` are one address, and `bücher.example` is
    /// `xn--bcher-kva.example`.
    ///
    /// # Errors
    /// `BadEmail` when the trimmed string is not a plain address (no display name, no comments,
    /// no quoted local part), its domain is no valid IDNA name, or it holds any control character.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        use unicode_normalization::UnicodeNormalization as _;
        if raw.len() > 1024 {
            return Err(IdentifierError::BadEmail);
        }
        let normalised: String = raw.nfkc().collect();
        let trimmed = normalised.trim();
        if trimmed.is_empty() || trimmed.len() > 254 || trimmed.chars().any(|c| c.is_control() || invisible(c)) {
            return Err(IdentifierError::BadEmail);
        }
        // Quoted local parts ("jane"@x, "a@b"@x) make one mailbox spellable many ways and have
        // carried SMTP injection (MimeKit GHSA-g7hc-96xr-gvvx): refused.
        if trimmed.contains('"') {
            return Err(IdentifierError::BadEmail);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(IdentifierError::BadEmail)?;
        let domain = idna::domain_to_ascii_strict(domain).map_err(|_| IdentifierError::BadEmail)?;
        // Lower-casing can leave text that is not normalised ("İ" becomes "i" + U+0307, which
        // must then be reordered before a following mark of lower class): normalise again,
        // until nothing changes, so that parsing what this returns gives it back.
        let mut local: String = local.to_lowercase().nfkc().collect();
        for _ in 0..4 {
            let next: String = local.to_lowercase().nfkc().collect();
            if next == local {
                break;
            }
            local = next;
        }
        let lowered = format!("{local}@{domain}");
        if lowered.len() > 254 {
            return Err(IdentifierError::BadEmail);
        }
        let options = email_address::Options::default().without_display_text().without_domain_literal();
        match email_address::EmailAddress::parse_with_options(&lowered, options) {
            // The crate accepts dotless domains ("a@localhost"); a login address needs a real domain.
            Ok(parsed) if parsed.domain().contains('.') && !parsed.domain().ends_with('.') => Ok(Self(lowered)),
            _ => Err(IdentifierError::BadEmail),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `j***@example.com`: the form that may appear in logs.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }

    /// The local part, Auth0's `nickname` for email users.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(l, _)| l)
    }
}

/// Format characters that render as nothing (Unicode category Cf, the ones seen in spoofing:
/// zero-width spaces and joiners, direction marks and overrides, the soft hyphen, the BOM).
fn invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

impl TryFrom<String> for Email {
    type Error = IdentifierError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// A phone number in E.164 form (`+` and 1–15 digits), checked against the numbering plans of
/// libphonenumber (the `phonenumber` crate) so that no SMS goes to a number that cannot exist.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
    kind: Option<CostlyKind>,
}

/// Kinds of number an SMS costs the sender (or earns a fraudster) more than a plain one; they
/// are the targets of SMS pumping, refused unless `limits.sms_allowed_kinds` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostlyKind {
    PremiumRate,
    SharedCost,
    /// Satellite and international networks: +870 (Inmarsat), +881 (GMSS), +882 and +883.
    Satellite,
}

impl CostlyKind {
    /// The words used in the refusal.
    pub fn label(self) -> &'static str {
        match self {
            Self::PremiumRate => "premium rate",
            Self::SharedCost => "shared cost",
            Self::Satellite => "satellite or international network",
        }
    }
}

impl PhoneNumber {
    /// Parses a submitted number. Only Auth0's exact form is accepted: no spaces, no national form.
    ///
    /// # Errors
    /// `PhonePattern` when it is not `^\+[0-9]{1,15}$`; `PhoneNotDialable` when no plan knows it.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let digits = raw.strip_prefix('+').ok_or(IdentifierError::PhonePattern)?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentifierError::PhonePattern);
        }
        let parsed = phonenumber::parse(None, raw).map_err(|_| IdentifierError::PhoneNotDialable)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(IdentifierError::PhoneNotDialable);
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        let country = parsed.country().id().map(|id| id.as_ref().to_owned());
        let kind = if matches!(parsed.code().value(), 870 | 881 | 882 | 883) {
            Some(CostlyKind::Satellite)
        } else {
            match parsed.number_type(&phonenumber::metadata::DATABASE) {
                phonenumber::Type::PremiumRate => Some(CostlyKind::PremiumRate),
                phonenumber::Type::SharedCost => Some(CostlyKind::SharedCost),
                _ => None,
            }
        };
        Ok(Self { e164, country, kind })
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// ISO 3166 region of the number (`US`, `FR`, …) where the plan names one.
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }

    /// The costly kind of this number, if it is one (premium rate, shared cost, satellite).
    pub fn costly_kind(&self) -> Option<CostlyKind> {
        self.kind
    }

    /// The number range: the E.164 form without its last two digits (`+14155552671` is in
    /// `+141555526`), the key of the per-range SMS cap against pumping through one block.
    pub fn range(&self) -> &str {
        &self.e164[..self.e164.len().saturating_sub(2).max(2)]
    }

    /// `+1415***2671`: the form that may appear in logs.
    pub fn masked(&self) -> String {
        // At least three digits always hidden, short numbers too (`+4930614` was shown whole:
        // found by fuzz/phone_number).
        let n = self.e164.len();
        let tail = if n >= 12 { 4 } else { 2 };
        let head = 5.min(n.saturating_sub(tail + 3)).max(2);
        format!("{}***{}", &self.e164[..head], &self.e164[n - tail..])
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = IdentifierError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.e164
    }
}
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Who a challenge is for: an email address or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Identifier {
    Email(Email),
    Phone(PhoneNumber),
}

impl Identifier {
    /// The canonical string: the normalised address or the E.164 number.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Email(e) => e.as_str(),
            Self::Phone(p) => p.e164(),
        }
    }

    pub fn masked(&self) -> String {
        match self {
            Self::Email(e) => e.masked(),
            Self::Phone(p) => p.masked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Jane.Doe@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "jane.doe@example.com");
        assert_eq!(email.masked(), "j***@example.com");
        assert_eq!(email.local_part(), "jane.doe");
    }

    /// Found by the `email` fuzz target: "İ" lower-cases to "i" + U+0307, which NFKC must then
    /// reorder before U+035A; parsing the result again gave another string (another user).
    #[test]
    fn parsing_a_parsed_address_gives_it_back() {
        for raw in ["İ\u{35a}jane@example.com", "JANEİ\u{35a}@example.com", "a\u{340}İb@example.com"] {
            let once = Email::parse(raw).expect(raw);
            assert_eq!(Email::parse(once.as_str()).expect("parses again"), once, "{raw:?}");
        }
        assert_eq!(Email::parse("İ\u{35a}@example.com").expect("valid").as_str(), "i\u{35a}\u{307}@example.com");
    }

    #[test]
    fn full_width_spellings_are_one_address_and_invisible_characters_are_refused() {
        for same in
            ["ｊane.doe@example.com", "ＪＡＮＥ.DOE@example.com", "jane.doe＠example.com", "jane.doe@exａmple.com"]
        {
            assert_eq!(Email::parse(same).expect(same).as_str(), "jane.doe@example.com", "{same}");
        }
        for bad in [
            "jane.doe\u{200b}@example.com",
            "jane\u{00ad}.doe@example.com",
            "\u{202e}moc.elpmaxe@eod.enaj",
            "\u{feff}jane@example.com",
        ] {
            assert_eq!(Email::parse(bad), Err(IdentifierError::BadEmail), "{bad:?}");
        }
        // A Cyrillic а is another letter, not a spelling: another address (or refused), never this one.
        assert_ne!(
            Email::parse("jаne.doe@example.com").map(|e| e.as_str().to_owned()).ok().as_deref(),
            Some("jane.doe@example.com")
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.com",
            "Jane <jane@example.com>",
            "a@b.com\r\nBcc: x@y.com",
            "a b@c.com",
            "a@[127.0.0.1]",
        ] {
            assert_eq!(Email::parse(bad), Err(IdentifierError::BadEmail), "{bad:?}");
        }
    }

    #[test]
    fn phone_numbers_follow_auth0_pattern_then_numbering_plans() {
        let phone = PhoneNumber::parse("+14155552671").expect("valid US number");
        assert_eq!(phone.e164(), "+14155552671");
        assert_eq!(phone.country(), Some("US"));
        assert_eq!(phone.masked(), "+1415***2671");
        for short in ["+6834002", "+4930614"] {
            let masked = PhoneNumber::parse(short).expect(short).masked();
            let shown = masked.chars().filter(char::is_ascii_digit).count();
            assert!(shown + 3 < short.len(), "{short} → {masked}: at least three digits hidden");
        }
        assert_eq!(PhoneNumber::parse("+33612345678").expect("FR").country(), Some("FR"));
        for bad in ["14155552671", "+", "+1 415 555 2671", "+1234567890123456", "+1415555267a", "0612345678"] {
            assert_eq!(PhoneNumber::parse(bad), Err(IdentifierError::PhonePattern), "{bad:?}");
        }
        assert_eq!(PhoneNumber::parse("+999123"), Err(IdentifierError::PhoneNotDialable));
    }

    #[test]
    fn costly_numbers_are_recognised_and_a_range_drops_the_last_two_digits() {
        let kind = |n: &str| PhoneNumber::parse(n).expect(n).costly_kind();
        assert_eq!(kind("+14155552671"), None);
        assert_eq!(kind("+33612345678"), None);
        assert_eq!(kind("+449098765432"), Some(CostlyKind::PremiumRate), "UK 09");
        assert_eq!(kind("+19002345678"), Some(CostlyKind::PremiumRate), "US 900");
        assert_eq!(kind("+881612345678"), Some(CostlyKind::Satellite));
        assert_eq!(PhoneNumber::parse("+14155552671").expect("US").range(), "+141555526");
    }
}
