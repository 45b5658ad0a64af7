use std::time::Duration;

use serde::Deserialize;

/// Where SES is and what the emails say they come from: the `[ses]` section of Sesame's settings.
///
/// Credentials are never part of it: they come from the standard AWS chain (environment, profile,
/// web identity, container or instance role), as does the region when `region` is not set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    /// `eu-west-1`, …; `None` takes the region from the AWS chain (`AWS_REGION`, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Another SES endpoint, such as a local emulator (`http://127.0.0.1:5000`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The sending address, an identity verified in SES (`no-reply@example.com`).
    pub from_address: String,
    /// The display name in front of it (`Example Login`); any Unicode, no control characters.
    #[serde(default)]
    pub from_name: Option<String>,
    /// The SES configuration set for event publishing (bounces, complaints, deliveries).
    #[serde(default)]
    pub configuration_set: Option<String>,
    /// How long to wait for a TCP and TLS connection.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one HTTP attempt may take.
    #[serde(default = "defaults::attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
    /// How long a whole send may take, retries and their backoff included. The SDK has no such
    /// limit by default: without it a server that accepts and never answers hangs the send.
    #[serde(default = "defaults::operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Attempts per send made by the SDK itself (standard retry mode, only for transient
    /// failures); the outbox retries on top of this with its own backoff.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
}

impl SesConfig {
    /// A configuration with the default timeouts and retries.
    pub fn new(from_address: impl Into<String>) -> Self {
        Self {
            region: None,
            endpoint_url: None,
            from_address: from_address.into(),
            from_name: None,
            configuration_set: None,
            connect_timeout_ms: defaults::connect_timeout_ms(),
            attempt_timeout_ms: defaults::attempt_timeout_ms(),
            operation_timeout_ms: defaults::operation_timeout_ms(),
            max_attempts: defaults::max_attempts(),
        }
    }

    pub(crate) fn timeout_config(&self) -> aws_sdk_sesv2::config::timeout::TimeoutConfig {
        aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .operation_attempt_timeout(Duration::from_millis(self.attempt_timeout_ms))
            .operation_timeout(Duration::from_millis(self.operation_timeout_ms))
            .build()
    }

    pub(crate) fn retry_config(&self) -> aws_sdk_sesv2::config::retry::RetryConfig {
        aws_sdk_sesv2::config::retry::RetryConfig::standard().with_max_attempts(self.max_attempts.max(1))
    }
}

mod defaults {
    pub(super) fn connect_timeout_ms() -> u64 {
        2_000
    }
    pub(super) fn attempt_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn operation_timeout_ms() -> u64 {
        12_000
    }
    pub(super) fn max_attempts() -> u32 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fill_in_defaults() {
        let config: SesConfig = toml::from_str("from_address = \"no-reply@example.com\"").unwrap();
        assert_eq!(config, SesConfig::new("no-reply@example.com"));
        assert_eq!(
            (config.connect_timeout_ms, config.attempt_timeout_ms, config.operation_timeout_ms),
            (2_000, 5_000, 12_000)
        );
        assert_eq!(config.max_attempts, 3);
    }

    #[test]
    fn settings_refuse_unknown_keys_and_a_missing_from_address() {
        assert!(toml::from_str::<SesConfig>("from_address = \"a@example.com\"\nfrom = \"b@example.com\"").is_err());
        assert!(toml::from_str::<SesConfig>("region = \"eu-west-1\"").is_err());
    }

    #[test]
    fn every_timeout_is_set() {
        let timeouts = SesConfig::new("a@example.com").timeout_config();
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(12)));
    }
}
