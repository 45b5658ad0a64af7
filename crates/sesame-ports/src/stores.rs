use std::time::Duration;

use async_trait::async_trait;
use sesame_domain::{
    ChallengeKey, CheckOutcome, Client, ClientId, Connection, ConnectionName, Identifier, MessageId, NewChallenge,
    OutboxMessage, Proof, User, UserId,
};
use time::OffsetDateTime;

use crate::StoreError;

/// Applications.
#[async_trait]
pub trait ClientStore: Send + Sync + std::fmt::Debug {
    async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    /// Whether any client lists `origin` among its allowed origins (a CORS preflight names no client).
    async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError>;
    async fn list(&self) -> Result<Vec<Client>, StoreError>;
    /// Inserts the client, or replaces the one with the same id.
    async fn save(&self, client: &Client) -> Result<(), StoreError>;
    /// Returns whether a client was there.
    async fn delete(&self, id: &ClientId) -> Result<bool, StoreError>;
}

/// Passwordless connections and their settings.
#[async_trait]
pub trait ConnectionStore: Send + Sync + std::fmt::Debug {
    async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError>;
    async fn list(&self) -> Result<Vec<Connection>, StoreError>;
    /// Inserts the connection, or replaces the one with the same name.
    async fn save(&self, connection: &Connection) -> Result<(), StoreError>;
}

/// Challenges (the stored side of a code or link).
///
/// Guarantees:
/// - `start` replaces every earlier challenge of the same key **and** enqueues the message in one
///   atomic step: either both happen or neither.
/// - `check` is atomic: a try is counted before the comparison; of any number of concurrent
///   checks of one valid proof with `consume`, exactly one is `Accepted`; expired, used,
///   replaced and exhausted challenges never accept.
#[async_trait]
pub trait ChallengeStore: Send + Sync + std::fmt::Debug {
    async fn start(&self, challenge: NewChallenge, message: OutboxMessage) -> Result<(), StoreError>;

    /// Checks `proof` against the live challenge of `key` at `now`. A wrong proof counts one
    /// attempt; the try that reaches `CodePolicy::MAX_ATTEMPTS` answers `Exhausted`, as does every
    /// later one. With `consume`, an accepted challenge is used up; without, it stays live
    /// (the legacy `/passwordless/verify`).
    async fn check(
        &self,
        key: &ChallengeKey,
        proof: Proof,
        consume: bool,
        now: OffsetDateTime,
    ) -> Result<CheckOutcome, StoreError>;
}

/// Users of passwordless connections.
///
/// Guarantee: one user per (connection, identifier), however many first logins race.
#[async_trait]
pub trait UserStore: Send + Sync + std::fmt::Debug {
    /// Finds the user or creates it with `new_id`; records the login (count, time) and marks the
    /// identifier verified.
    async fn record_login(
        &self,
        connection: &ConnectionName,
        identifier: &Identifier,
        new_id: UserId,
        now: OffsetDateTime,
    ) -> Result<User, StoreError>;
    async fn find(&self, connection: &ConnectionName, identifier: &Identifier) -> Result<Option<User>, StoreError>;
    async fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError>;
}

/// Where an outbox message stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sent,
    /// Given up: permanent rejection or too many attempts.
    Failed(String),
    /// Not sent because the code inside expired first.
    Dropped,
}

/// A message a worker holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    pub message: OutboxMessage,
    /// Delivery attempts including this one.
    pub attempt: u32,
}

/// The transactional outbox.
///
/// Guarantees: a message is never lost; a claimed message is not claimed again until its lease
/// ends (so concurrent claimers, in any number of replicas, never get the same message); a
/// message marked sent, failed or dropped is never claimed again.
#[async_trait]
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Claims up to `max` messages due at `now` (new, retry time reached, or lease expired),
    /// oldest first, each leased until `now + lease`.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Claims the message `id` if it is pending, due and not leased (the start path delivers its
    /// own SMS at once); `None` otherwise.
    async fn claim(
        &self,
        id: &MessageId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedMessage>, StoreError>;
    async fn mark_sent(&self, id: &MessageId, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Releases the lease and makes the message due again at `at`.
    async fn retry_at(&self, id: &MessageId, at: OffsetDateTime, error: &str) -> Result<(), StoreError>;
    /// Ends the message as `Failed(reason)` or `Dropped`.
    async fn finish(&self, id: &MessageId, state: DeliveryState, now: OffsetDateTime) -> Result<(), StoreError>;
    async fn state(&self, id: &MessageId) -> Result<Option<DeliveryState>, StoreError>;
    /// The earliest time any pending message becomes due, to let a worker sleep until then.
    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;
}
