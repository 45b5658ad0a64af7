//! What the use cases count, each name written once here (docs/operations.md lists them with
//! their labels). Through the `metrics` facade: nothing is kept until the binary installs a
//! recorder. Every label value is one of a fixed set or an operator-declared name (a
//! connection): never an identifier, a secret or an IP.

use metrics::counter;
use sesame_domain::{Channel, Send};

use crate::delivery::Delivered;
use crate::limits::FailMode;

/// A start that stored its challenge and queued its message.
pub(crate) fn started(connection: &str, send: Send) {
    counter!("sesame_starts_total", "connection" => connection.to_owned(), "send" => send.as_str()).increment(1);
}

/// How a code or link check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchange {
    Ok,
    Wrong,
    Expired,
    Exhausted,
    /// No live code for the proof: used already, replaced, or never issued.
    Burnt,
    RateLimited,
}

impl Exchange {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Wrong => "wrong",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Burnt => "burnt",
            Self::RateLimited => "rate_limited",
        }
    }
}

pub(crate) fn exchanged(outcome: Exchange, by_link: bool) {
    let proof = if by_link { "link" } else { "code" };
    counter!("sesame_exchanges_total", "outcome" => outcome.as_str(), "proof" => proof).increment(1);
}

pub(crate) fn delivered(channel: Channel, outcome: &Delivered) {
    let outcome = match outcome {
        Delivered::Sent => "sent",
        Delivered::Retrying => "retrying",
        Delivered::Failed(_) => "failed",
        Delivered::Dropped => "dropped",
    };
    counter!("sesame_deliveries_total", "channel" => channel.as_str(), "outcome" => outcome).increment(1);
}

/// A request refused by the rate limiter, by the rule (the bucket's kind, never its key).
pub(crate) fn refused(rule_key: &str) {
    counter!("sesame_rate_limit_refusals_total", "rule" => rule_name(rule_key)).increment(1);
}

/// The shared limiter failed and the request was decided as `mode` says.
pub(crate) fn limiter_failed(mode: FailMode) {
    let mode = match mode {
        FailMode::Open => "open",
        FailMode::Closed => "closed",
    };
    counter!("sesame_limiter_failures_total", "mode" => mode).increment(1);
}

/// A dependency answered with an error or not at all: `store`, `limiter`, `email`, `sms`.
pub(crate) fn dependency_error(adapter: &'static str) {
    counter!("sesame_dependency_errors_total", "adapter" => adapter).increment(1);
}

/// The kind of a limiter bucket from its key (`start:ip:203.0.113.7` → `start:ip`): a fixed set.
pub(crate) fn rule_name(key: &str) -> &'static str {
    const KINDS: [&str; 8] = [
        "start:ip",
        "start:id",
        "start:client",
        "start:cooldown",
        "sms:country",
        "sms:range",
        "failed:id",
        "exchange:ip",
    ];
    KINDS.into_iter().find(|k| key.strip_prefix(k).is_some_and(|rest| rest.starts_with(':'))).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::rule_name;

    #[test]
    fn a_rule_is_named_by_its_kind_never_its_key() {
        assert_eq!(rule_name("start:ip:203.0.113.7"), "start:ip");
        assert_eq!(rule_name("start:id:0a1b2c"), "start:id");
        assert_eq!(rule_name("sms:range:+1415555"), "sms:range");
        assert_eq!(rule_name("start:ipx:1"), "other");
        assert_eq!(rule_name("someone@example.com"), "other");
    }
}
