use time::OffsetDateTime;

use crate::{ClientId, ConnectionName, Identifier, SecretHash, Send};

/// What a challenge is bound to: one client, one connection, one identifier. A new start for
/// the same key replaces the earlier challenge, so only the newest code or link works.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ChallengeKey {
    pub client_id: ClientId,
    pub connection: ConnectionName,
    pub identifier: Identifier,
}

/// The `authParams` of a start, in the order received (the magic link keeps that order).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct AuthParams(pub serde_json::Map<String, serde_json::Value>);

impl AuthParams {
    /// A parameter as a string: strings as they are, other JSON values in their JSON form.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(value_as_param)
    }

    /// Every parameter as (name, string value), skipping nulls, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, String)> {
        self.0.iter().filter_map(|(k, v)| value_as_param(v).map(|v| (k.as_str(), v)))
    }
}

fn value_as_param(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A challenge as the start flow creates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewChallenge {
    /// 24 hex digits, returned as `_id` by `/passwordless/start`.
    pub id: String,
    pub key: ChallengeKey,
    pub code_hash: SecretHash,
    pub link_hash: Option<SecretHash>,
    pub send: Send,
    pub auth_params: AuthParams,
    /// The raw `x-request-language` or `Accept-Language` value, if any.
    pub language: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored challenge, with its use so far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Challenge {
    pub challenge: NewChallenge,
    pub attempts: u32,
    pub consumed_at: Option<OffsetDateTime>,
}

/// What the user presents: the keyed hash of a typed code or of a link token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Code(SecretHash),
    Link(SecretHash),
}

/// The answer of a check. Every refusal counts as a wrong try where a live challenge exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The proof matched; with `consume`, the challenge is now used up.
    Accepted(Box<Challenge>),
    /// The proof did not match a live challenge, and this try counted. With `attempts_left` 0
    /// this try used the last attempt: the challenge is now dead.
    Wrong { attempts_left: u32 },
    /// An earlier try used the last attempt: the challenge was dead already and this try did
    /// not count (so tries against a dead code cannot be piled up against its owner). Only
    /// told to a proof that matches the dead challenge; any other proof gets `NotFound`.
    Exhausted,
    /// The challenge outlived its lifetime. Only told to a proof that matches it; any other
    /// proof gets `NotFound` (so a stranger cannot learn that a login was started).
    Expired,
    /// No live challenge the proof could belong to: never started, replaced by a newer start,
    /// already used, or dead and the proof is not its code.
    NotFound,
}
