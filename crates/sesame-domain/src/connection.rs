use std::time::Duration;

/// The name of a passwordless connection (`email`, `sms`, or a custom one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ConnectionName(pub String);

impl ConnectionName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a connection reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Email,
    Sms,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

/// A configuration mistake in a code policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("code length must be between 4 and 40, got {0}")]
    Length(u32),
    #[error("code lifetime must be between 60 and 600 seconds, got {0}")]
    Lifetime(u64),
}

/// How codes of one connection are made and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodePolicy {
    length: u8,
    lifetime_secs: u32,
}

impl CodePolicy {
    /// Wrong guesses that burn a code (Auth0: three, not configurable).
    pub const MAX_ATTEMPTS: u32 = 3;
    /// The hard cap on a code's life: NIST 800-63B §5.1.3.2 and ASVS 6.5.5 say ten minutes.
    pub const MAX_LIFETIME_SECS: u64 = 600;

    /// # Errors
    /// When the length is outside 4–40 (Auth0's `totp.length`) or the lifetime outside 60–600 s
    /// (Auth0's `totp.time_step` minimum, and the ten-minute cap).
    pub fn new(length: u32, lifetime_secs: u64) -> Result<Self, PolicyError> {
        if !(4..=40).contains(&length) {
            return Err(PolicyError::Length(length));
        }
        if !(60..=Self::MAX_LIFETIME_SECS).contains(&lifetime_secs) {
            return Err(PolicyError::Lifetime(lifetime_secs));
        }
        Ok(Self { length: length as u8, lifetime_secs: lifetime_secs as u32 })
    }

    pub fn length(&self) -> usize {
        usize::from(self.length)
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.lifetime_secs))
    }
}

impl Default for CodePolicy {
    /// Six digits, three minutes: Auth0's defaults.
    fn default() -> Self {
        Self { length: 6, lifetime_secs: 180 }
    }
}

/// A token bucket: `limit` requests per `window_secs`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub limit: u32,
    pub window_secs: u64,
}

impl Rate {
    pub const fn per_hour(limit: u32) -> Self {
        Self { limit, window_secs: 3600 }
    }
}

/// A connection's own limits; each one left out takes the service-wide value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    pub start_per_identifier: Option<Rate>,
    pub send_cooldown_secs: Option<u64>,
    pub failed_per_identifier: Option<Rate>,
    pub sms_per_country: Option<Rate>,
    pub sms_per_range: Option<Rate>,
    /// ISO 3166 countries this (SMS) connection may send to; empty allows all.
    pub sms_allowed_countries: Option<Vec<String>>,
    /// Costly kinds of number this (SMS) connection may send to; empty refuses them all.
    pub sms_allowed_kinds: Option<Vec<crate::CostlyKind>>,
}

/// A passwordless connection and its settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub name: ConnectionName,
    pub strategy: Strategy,
    pub policy: CodePolicy,
    /// Only users that already exist may log in (Auth0's `disable_signup`).
    pub disable_signup: bool,
    #[serde(default)]
    pub limits: ConnectionLimits,
}

impl Connection {
    /// The default connection of a strategy, named after it.
    pub fn default_for(strategy: Strategy) -> Self {
        Self {
            name: ConnectionName::new(strategy.as_str()),
            strategy,
            policy: CodePolicy::default(),
            disable_signup: false,
            limits: ConnectionLimits::default(),
        }
    }
}

/// What `/passwordless/start` sends: a code, or a (web, iOS or Android) link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Send {
    Code,
    Link,
    LinkIos,
    LinkAndroid,
}

/// `send` held a value outside the enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("No enum match for: {0}")]
pub struct SendError(pub String);

impl Send {
    /// # Errors
    /// When the value is not one of `code`, `link`, `link_ios`, `link_android`.
    pub fn parse(raw: &str) -> Result<Self, SendError> {
        match raw {
            "code" => Ok(Self::Code),
            "link" => Ok(Self::Link),
            "link_ios" => Ok(Self::LinkIos),
            "link_android" => Ok(Self::LinkAndroid),
            other => Err(SendError(other.to_owned())),
        }
    }

    /// The default when `send` is absent or null: a link for email (Auth0's documented default),
    /// a code for SMS (what the SDKs expect, spec §4.1).
    pub fn default_for(strategy: Strategy) -> Self {
        match strategy {
            Strategy::Email => Self::Link,
            Strategy::Sms => Self::Code,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Link => "link",
            Self::LinkIos => "link_ios",
            Self::LinkAndroid => "link_android",
        }
    }

    pub fn is_link(self) -> bool {
        !matches!(self, Self::Code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_limits_follow_auth0_and_nist() {
        assert!(CodePolicy::new(4, 60).is_ok());
        assert!(CodePolicy::new(40, 600).is_ok());
        assert_eq!(CodePolicy::new(3, 180), Err(PolicyError::Length(3)));
        assert_eq!(CodePolicy::new(41, 180), Err(PolicyError::Length(41)));
        assert_eq!(CodePolicy::new(6, 59), Err(PolicyError::Lifetime(59)));
        assert_eq!(CodePolicy::new(6, 601), Err(PolicyError::Lifetime(601)));
        let default = CodePolicy::default();
        assert_eq!((default.length(), default.lifetime().as_secs()), (6, 180));
    }

    #[test]
    fn send_parses_the_four_values_and_defaults_per_strategy() {
        assert_eq!(Send::parse("link_ios"), Ok(Send::LinkIos));
        assert_eq!(Send::parse("sms"), Err(SendError("sms".into())));
        assert_eq!(Send::default_for(Strategy::Email), Send::Link);
        assert_eq!(Send::default_for(Strategy::Sms), Send::Code);
    }
}
