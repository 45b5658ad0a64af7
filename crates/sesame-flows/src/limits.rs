//! Rate limits of the two hot paths, as rules for the `RateLimiter` port: one call (one round
//! trip) per request on the success path.

use std::time::Duration;

use sesame_domain::{ChallengeKey, ConnectionLimits, CostlyKind, Identifier, Strategy};
use sesame_ports::{LimitDecision, LimitRule};

pub use sesame_domain::Rate;

fn rule(rate: Rate, key: String, cost: u32) -> LimitRule {
    LimitRule::new(key, rate.limit, Duration::from_secs(rate.window_secs.max(1)), cost)
}

/// What to do when the limiter's store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Refuse (503): nothing is sent. The default for SMS, where abuse costs money.
    Closed,
    /// Let the request through unlimited, with a warning.
    Open,
}

/// Per-channel failure modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailModes {
    pub sms: FailMode,
    pub email: FailMode,
    pub exchange: FailMode,
}

impl Default for FailModes {
    fn default() -> Self {
        Self { sms: FailMode::Closed, email: FailMode::Open, exchange: FailMode::Open }
    }
}

/// The limits, with safe defaults (docs/configuration.md lists them with their sources).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// `/passwordless/start` per client IP: Auth0's 50 per hour.
    pub start_per_ip: Rate,
    /// Messages per identifier (email address or phone number).
    pub start_per_identifier: Rate,
    /// A ceiling per client, against one compromised app draining the budget.
    pub start_per_client: Rate,
    /// SMS per destination country, against SMS pumping: a modest ceiling, to raise for a
    /// country where real traffic is larger.
    pub sms_per_country: Rate,
    /// SMS per number range (the number without its last two digits), against pumping through
    /// one block of numbers a fraudster rents.
    pub sms_per_range: Rate,
    /// Minimum seconds between two sends to one identifier; 0 = off (Auth0: a quick resend works).
    pub send_cooldown_secs: u64,
    /// Code exchanges per client IP.
    pub exchange_per_ip: Rate,
    /// Failed code tries per identifier, across all its codes; a new start does not reset it
    /// (NIST 800-63B §5.2.2, ASVS 2.2.1: at most 100 per hour).
    pub failed_per_identifier: Rate,
    /// ISO 3166 countries SMS may go to; empty allows all.
    pub sms_allowed_countries: Vec<String>,
    /// Costly kinds of number (premium rate, shared cost, satellite) SMS may go to; empty
    /// refuses them all.
    pub sms_allowed_kinds: Vec<CostlyKind>,
    /// Management API calls per client (Auth0's Enterprise figure: 50 a second).
    pub management_per_client: Rate,
    /// `client_credentials` tokens per client: a backend should keep its token until it expires.
    pub client_credentials_per_client: Rate,
    pub fail: FailModes,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            start_per_ip: Rate::per_hour(50),
            start_per_identifier: Rate::per_hour(10),
            start_per_client: Rate::per_hour(100_000),
            sms_per_country: Rate::per_hour(1_000),
            sms_per_range: Rate::per_hour(10),
            send_cooldown_secs: 0,
            exchange_per_ip: Rate { limit: 100, window_secs: 60 },
            failed_per_identifier: Rate::per_hour(100),
            sms_allowed_countries: Vec::new(),
            sms_allowed_kinds: Vec::new(),
            management_per_client: Rate { limit: 3_000, window_secs: 60 },
            client_credentials_per_client: Rate::per_hour(1_000),
            fail: FailModes::default(),
        }
    }
}

impl LimitSettings {
    /// These settings with a connection's own limits laid over them.
    pub fn for_connection(&self, own: &ConnectionLimits) -> Self {
        Self {
            start_per_identifier: own.start_per_identifier.unwrap_or(self.start_per_identifier),
            send_cooldown_secs: own.send_cooldown_secs.unwrap_or(self.send_cooldown_secs),
            failed_per_identifier: own.failed_per_identifier.unwrap_or(self.failed_per_identifier),
            sms_per_country: own.sms_per_country.unwrap_or(self.sms_per_country),
            sms_per_range: own.sms_per_range.unwrap_or(self.sms_per_range),
            sms_allowed_kinds: own.sms_allowed_kinds.clone().unwrap_or_else(|| self.sms_allowed_kinds.clone()),
            sms_allowed_countries: own
                .sms_allowed_countries
                .clone()
                .unwrap_or_else(|| self.sms_allowed_countries.clone()),
            ..self.clone()
        }
    }

    /// The rules of one start. `id_tag` stands for the identifier (a keyed hash: no email
    /// address or phone number goes into the limiter's keys).
    pub fn start_rules(&self, key: &ChallengeKey, id_tag: &str, ip: Option<&str>) -> Vec<LimitRule> {
        // The buckets of one identifier (or one number range) are never what the headers report
        // while a start is allowed: their counts would tell a stranger about someone's logins.
        let mut rules = vec![
            rule(self.start_per_identifier, format!("start:id:{id_tag}"), 1).unreported(),
            rule(self.start_per_client, format!("start:client:{}", key.client_id.as_str()), 1),
        ];
        if let Some(ip) = ip {
            rules.insert(0, rule(self.start_per_ip, format!("start:ip:{ip}"), 1));
        }
        if self.send_cooldown_secs > 0 {
            let cooldown = Rate { limit: 1, window_secs: self.send_cooldown_secs };
            rules.push(rule(cooldown, format!("start:cooldown:{id_tag}"), 1).unreported());
        }
        if let Identifier::Phone(p) = &key.identifier {
            rules.push(rule(self.sms_per_country, format!("sms:country:{}", p.country().unwrap_or("unknown")), 1));
            rules.push(rule(self.sms_per_range, format!("sms:range:{}", p.range()), 1).unreported());
        }
        rules
    }

    /// The rules checked before an exchange: the IP takes a token; failures are only looked at.
    pub fn exchange_rules(&self, id_tag: &str, ip: Option<&str>) -> Vec<LimitRule> {
        let mut rules = vec![rule(self.failed_per_identifier, format!("failed:id:{id_tag}"), 0).unreported()];
        if let Some(ip) = ip {
            rules.push(rule(self.exchange_per_ip, format!("exchange:ip:{ip}"), 1));
        }
        rules
    }

    /// A Management API call by `client_id`.
    pub fn management_rules(&self, client_id: &str) -> Vec<LimitRule> {
        vec![rule(self.management_per_client, format!("mgmt:client:{client_id}"), 1)]
    }

    /// A `client_credentials` token for `client_id`.
    pub fn client_credentials_rules(&self, client_id: &str) -> Vec<LimitRule> {
        vec![rule(self.client_credentials_per_client, format!("m2m:client:{client_id}"), 1)]
    }

    /// The rule a failed try takes a token from.
    pub fn failure_rule(&self, id_tag: &str) -> LimitRule {
        rule(self.failed_per_identifier, format!("failed:id:{id_tag}"), 1).unreported()
    }

    pub fn fail_mode(&self, strategy: Strategy) -> FailMode {
        match strategy {
            Strategy::Email => self.fail.email,
            Strategy::Sms => self.fail.sms,
        }
    }

    /// Whether SMS may go to a number of this costly kind (`None`: a plain number).
    pub fn sms_kind_allowed(&self, kind: Option<CostlyKind>) -> bool {
        kind.is_none_or(|k| self.sms_allowed_kinds.contains(&k))
    }

    /// Whether SMS may go to `country` (ISO 3166 alpha-2).
    pub fn sms_country_allowed(&self, country: Option<&str>) -> bool {
        self.sms_allowed_countries.is_empty()
            || country.is_some_and(|c| self.sms_allowed_countries.iter().any(|a| a.eq_ignore_ascii_case(c)))
    }
}

/// A use case's result together with the rate-limit state the response reports (the
/// `X-RateLimit-*` headers go on every response of a limited route).
#[derive(Debug)]
pub struct Limited<T, E> {
    pub result: Result<T, E>,
    pub limit: Option<LimitDecision>,
}

impl<T, E> Limited<T, E> {
    pub fn new(result: Result<T, E>, limit: Option<LimitDecision>) -> Self {
        Self { result, limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_domain::{ClientId, ConnectionName, PhoneNumber};

    #[test]
    fn sms_rules_add_a_country_bucket_and_the_allow_list_is_case_blind() {
        let key = ChallengeKey {
            client_id: ClientId::new("c"),
            connection: ConnectionName::new("sms"),
            identifier: Identifier::Phone(PhoneNumber::parse("+33612345678").unwrap_or_else(|_| unreachable!())),
        };
        let s =
            LimitSettings { send_cooldown_secs: 60, sms_allowed_countries: vec!["fr".into()], ..Default::default() };
        let keys: Vec<String> = s.start_rules(&key, "TAG", Some("10.0.0.1")).into_iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            vec![
                "start:ip:10.0.0.1",
                "start:id:TAG",
                "start:client:c",
                "start:cooldown:TAG",
                "sms:country:FR",
                "sms:range:+336123456"
            ]
        );
        assert!(s.sms_country_allowed(Some("FR")));
        assert!(!s.sms_country_allowed(Some("US")));
        assert!(!s.sms_country_allowed(None));
        assert!(LimitSettings::default().sms_country_allowed(None), "empty list allows all");
        assert!(!LimitSettings::default().sms_kind_allowed(Some(CostlyKind::PremiumRate)), "refused by default");
        assert!(LimitSettings::default().sms_kind_allowed(None));
        let open = LimitSettings { sms_allowed_kinds: vec![CostlyKind::Satellite], ..Default::default() };
        assert!(open.sms_kind_allowed(Some(CostlyKind::Satellite)));
    }
}
