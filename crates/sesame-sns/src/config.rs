use std::time::Duration;

use serde::Deserialize;

/// Where SNS is and how the SMS are sent: the `[sns]` section of Sesame's settings.
///
/// Credentials are never part of it: they come from the standard AWS chain (environment, profile,
/// web identity, container or instance role), as does the region when `region` is not set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnsConfig {
    /// `eu-west-1`, …; `None` takes the region from the AWS chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Another SNS endpoint, such as a local emulator (`http://127.0.0.1:5000`).
    pub endpoint_url: Option<String>,
    /// `AWS.SNS.SMS.SenderID`: the alphanumeric sender shown where the country supports one
    /// (1 to 11 letters and digits, at least one letter).
    pub sender_id: Option<String>,
    /// `AWS.MM.SMS.OriginationNumber`: the long code, toll-free number or short code to send
    /// from (`+15555550100`, `12345`), one the account owns.
    pub origination_number: Option<String>,
    /// How long to wait for a TCP and TLS connection.
    pub connect_timeout_ms: u64,
    /// How long one HTTP attempt may take.
    pub attempt_timeout_ms: u64,
    /// How long a whole send may take, retries and their backoff included. The SDK has no such
    /// limit by default: without it a server that accepts and never answers hangs the send.
    pub operation_timeout_ms: u64,
    /// Attempts per send made by the SDK itself (standard retry mode, only for transient
    /// failures); the outbox retries on top of this with its own backoff.
    pub max_attempts: u32,
}

impl Default for SnsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            sender_id: None,
            origination_number: None,
            connect_timeout_ms: 2_000,
            attempt_timeout_ms: 5_000,
            operation_timeout_ms: 12_000,
            max_attempts: 3,
        }
    }
}

impl SnsConfig {
    pub(crate) fn timeout_config(&self) -> aws_sdk_sns::config::timeout::TimeoutConfig {
        aws_sdk_sns::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .operation_attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .operation_timeout(Duration::from_millis(self.operation_timeout_ms))
            .build()
    }

    pub(crate) fn retry_config(&self) -> aws_sdk_sns::config::retry::RetryConfig {
        aws_sdk_sns::config::retry::RetryConfig::standard().with_max_attempts(self.max_attempts.max(1))
    }
}

/// `AWS.SNS.SMS.SenderID` rules: 1 to 11 ASCII letters and digits, at least one letter.
pub(crate) fn is_valid_sender_id(id: &str) -> bool {
    (1..=11).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && id.bytes().any(|b| b.is_ascii_alphabetic())
}

/// An E.164 number or a short code: an optional `+` and 3 to 15 digits.
pub(crate) fn is_valid_origination_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (3..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fill_in_defaults_and_refuse_unknown_keys() {
        let config: SnsConfig = toml::from_str("sender_id = \"Sesame\"").unwrap();
        assert_eq!(config, SnsConfig { sender_id: Some("Sesame".into()), ..SnsConfig::default() });
        assert_eq!(
            (config.connect_timeout_ms, config.attempt_timeout_ms, config.operation_timeout_ms),
            (2_000, 5_000, 12_000)
        );
        assert!(toml::from_str::<SnsConfig>("sender = \"Sesame\"").is_err());
    }

    #[test]
    fn every_timeout_is_set() {
        let timeouts = SnsConfig::default().timeout_config();
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(12)));
    }

    #[test]
    fn sender_ids_follow_the_sns_rules() {
        for good in ["Sesame", "A", "Login2FA", "ABCDEFGHIJK"] {
            assert!(is_valid_sender_id(good), "{good}");
        }
        for bad in ["", "ABCDEFGHIJKL", "123456", "My Login", "Login\r\n", "Sésame"] {
            assert!(!is_valid_sender_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn origination_numbers_are_e164_or_short_codes() {
        for good in ["+15555550100", "12345", "+447700900123"] {
            assert!(is_valid_origination_number(good), "{good}");
        }
        for bad in ["", "+", "+1 555 555 0100", "12", "+1234567890123456", "abc"] {
            assert!(!is_valid_origination_number(bad), "{bad:?}");
        }
    }
}
