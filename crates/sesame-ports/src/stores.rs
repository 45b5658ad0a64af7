use std::time::Duration;

use async_trait::async_trait;
use sesame_domain::{
    ChallengeKey, CheckOutcome, Client, ClientId, Connection, ConnectionName, Identifier, MessageId, NewChallenge,
    OutboxMessage, Proof, User, UserFilter, UserId, UserPatch,
};
use time::OffsetDateTime;

use crate::{AuditEvent, StoreError};

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
/// - `start` replaces every earlier challenge of the same key, enqueues the message **and**
///   records the audit event in one atomic step: all three happen or none does. (A store that
///   has no audit log of its own may hand the event to one; the hot path then still makes a
///   single write.)
/// - A new `start` ends the message of the key's earlier challenge with its code: if not yet
///   sent it never is (its `Outbox::state` is `None`), and a worker already sending it finishes,
///   its settlement then changing nothing. The earlier start's audit event stays in the log.
/// - `start` writes nothing when the user of the key's (connection, identifier) is blocked, and
///   answers `StartOutcome::Blocked`: the check costs no round trip of its own.
/// - `check` is atomic: a try is counted before the comparison; of any number of concurrent
///   checks of one valid proof with `consume`, exactly one is `Accepted`; expired, used,
///   replaced and exhausted challenges never accept.
#[async_trait]
pub trait ChallengeStore: Send + Sync + std::fmt::Debug {
    ///
    /// With `claimed_until`, the message is enqueued already claimed by the caller (its attempt
    /// 1, leased until then), as if `Outbox::claim` had taken it at once: the replica that made
    /// it delivers it without another write, and any claimer may take it once the lease lapses.
    async fn start(
        &self,
        challenge: NewChallenge,
        message: OutboxMessage,
        event: AuditEvent,
        claimed_until: Option<OffsetDateTime>,
    ) -> Result<StartOutcome, StoreError>;

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

/// The OTP grant's writes as one step (`POST /oauth/token`): check-and-consume the code and,
/// when it is accepted, the user's login (`UserStore::record_login`: the first login makes the
/// user), the opaque access token (`GrantStore::save_opaque`, when there is one) and the login's
/// audit event — on Postgres one statement, one round trip and one commit.
///
/// Guarantee (tested by `testkit::login_store`): the outcome of a refused proof is exactly
/// `ChallengeStore::check`'s (with `consume`), and nothing else is written; an accepted proof
/// leaves the user recorded as `record_login` would, and — unless the user is blocked — the
/// token findable and the event (with the user's id) in the log. For a blocked user neither the
/// token nor the event is written: the caller refuses the login and audits that instead.
#[async_trait]
pub trait LoginStore: Send + Sync + std::fmt::Debug {
    async fn check_and_login(&self, login: LoginWrite) -> Result<LoginOutcome, StoreError>;
}

/// What `LoginStore::check_and_login` writes.
#[derive(Debug, Clone)]
pub struct LoginWrite {
    pub key: ChallengeKey,
    pub proof: Proof,
    pub now: OffsetDateTime,
    /// The id a first login's user gets.
    pub new_user_id: UserId,
    /// The opaque access token (its `user_id` is the user's, whatever is given here).
    pub access_token: Option<crate::OpaqueToken>,
    /// The login's audit event (its `user_id` is filled in with the user's).
    pub event: AuditEvent,
}

/// What `LoginStore::check_and_login` did.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// The code was right and is used up; the login is recorded (unless `user.blocked`).
    LoggedIn(Box<User>),
    /// Refused, exactly as `ChallengeStore::check` refuses (never `Accepted`).
    Refused(CheckOutcome),
}

/// What `ChallengeStore::start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The challenge, its message and the audit event are stored.
    Stored,
    /// The identifier's user is blocked: nothing was written.
    Blocked,
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
    /// Page `page` (from 0) of `per_page` users matching `filter`, oldest first (ties by id),
    /// and how many match in all.
    async fn list(&self, filter: &UserFilter, page: u64, per_page: u64) -> Result<UserPage, StoreError>;
    /// Creates `user`. `Conflict` when its (connection, identifier) or its id is taken.
    async fn create(&self, user: &User) -> Result<(), StoreError>;
    /// Applies `patch` in one atomic step: concurrent patches of one user's metadata lose no
    /// key. `None` when there is no such user; `Conflict` when the new identifier belongs to
    /// another user of the connection; `TooLarge`, changing nothing, when either metadata would
    /// end above `METADATA_MAX_BYTES`.
    async fn update(&self, id: &UserId, patch: &UserPatch, now: OffsetDateTime) -> Result<Option<User>, StoreError>;
    /// Deletes the user and everything held about them, in one atomic step: the user row, its
    /// authorization codes, access and refresh tokens, the challenges of its (connection,
    /// identifier) with their messages not yet sent, and its audit events (those naming it; a
    /// start's event names no user and keeps only a masked identifier: it stays). Afterwards the
    /// identifier can sign up again, as a new user. Returns whether the user was there.
    async fn delete(&self, id: &UserId) -> Result<bool, StoreError>;
}

/// One page of a user listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPage {
    pub users: Vec<User>,
    /// How many users match the filter, over all pages.
    pub total: u64,
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

/// What a worker did with one claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Sent,
    /// Given up: permanent rejection or too many attempts.
    Failed(String),
    /// Not sent because the code inside expired first.
    Dropped,
    /// Released: due again at `at`, after `error`.
    Retry {
        at: OffsetDateTime,
        error: String,
    },
}

/// One message's settlement, for `Outbox::settle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub id: MessageId,
    pub outcome: Settlement,
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
/// message marked sent, failed or dropped is never claimed again (a sent one is gone).
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
    /// Claims the message `id` if it is pending, due and not leased (for a caller that must
    /// deliver one message itself; Sesame's start enqueues its message already claimed instead,
    /// see `ChallengeStore::start`); `None` otherwise.
    async fn claim(
        &self,
        id: &MessageId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedMessage>, StoreError>;
    /// Records what became of claimed messages, all in one step (a worker settles a whole
    /// batch at once). Only pending messages change: a message already failed or dropped stays
    /// as it is. A sent message leaves the outbox (`state` answers `None`: the transactional
    /// outbox's usual end, and the table does not grow with every login); a failed or dropped
    /// one stays, its sealed body wiped; a retried one is released from its lease and due again
    /// at its `at`.
    async fn settle(&self, batch: &[Settled], now: OffsetDateTime) -> Result<(), StoreError>;
    async fn mark_sent(&self, id: &MessageId, now: OffsetDateTime) -> Result<(), StoreError> {
        self.settle(&[Settled { id: id.clone(), outcome: Settlement::Sent }], now).await
    }
    /// Releases the lease and makes the message due again at `at`.
    async fn retry_at(&self, id: &MessageId, at: OffsetDateTime, error: &str) -> Result<(), StoreError> {
        let outcome = Settlement::Retry { at, error: error.to_owned() };
        self.settle(&[Settled { id: id.clone(), outcome }], at).await
    }
    /// Ends the message as `Sent`, `Failed(reason)` or `Dropped` (`Pending` changes nothing).
    async fn finish(&self, id: &MessageId, state: DeliveryState, now: OffsetDateTime) -> Result<(), StoreError> {
        let outcome = match state {
            DeliveryState::Pending => return Ok(()),
            DeliveryState::Sent => Settlement::Sent,
            DeliveryState::Failed(reason) => Settlement::Failed(reason),
            DeliveryState::Dropped => Settlement::Dropped,
        };
        self.settle(&[Settled { id: id.clone(), outcome }], now).await
    }
    async fn state(&self, id: &MessageId) -> Result<Option<DeliveryState>, StoreError>;
    /// The earliest time any pending message becomes due, to let a worker sleep until then.
    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;
    /// How many messages wait to be delivered and when the oldest of them was written: what
    /// an operator alerts on (`/metrics`), and a real round trip to the store (`/readyz`).
    async fn backlog(&self) -> Result<Backlog, StoreError>;
}

/// The outbox's pending messages, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: u64,
    /// `created_at` of the oldest pending message.
    pub oldest: Option<OffsetDateTime>,
}

/// What retention may delete: rows no request can use any more, past these times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Challenges that expired before this, consumed or not.
    pub challenges: OffsetDateTime,
    /// Authorization codes, opaque access tokens and refresh tokens that expired before this.
    pub grants: OffsetDateTime,
    /// Failed or dropped outbox messages that ended before this (a sent one leaves at once).
    pub outbox: OffsetDateTime,
    /// Audit events recorded before this; `None` keeps them all.
    pub audit: Option<OffsetDateTime>,
}

/// Rows one sweep deleted, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub challenges: u64,
    pub grants: u64,
    pub outbox: u64,
    pub audit: u64,
    /// Whether the store has more to look at now (a batch came back full, or a walk through a
    /// table has not reached its end); `false` once everything was looked at.
    pub more: bool,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.challenges + self.grants + self.outbox + self.audit
    }
}

/// Deletes what has outlived its use, a little at a time.
///
/// Guarantees: only rows past their cutoff go, at most `batch` of each kind per call; calls
/// repeated from one that answered `more: false` until the next such answer look at every row
/// (a row past its cutoff throughout is gone by then, unless a request held it when it was
/// looked at); a call
/// holds no lock that a start, a check or a delivery waits for (rows they hold are skipped, and
/// go in a later call); of several replicas calling at once on one store, one sweeps and the
/// others get `Ok(None)`.
#[async_trait]
pub trait Retention: Send + Sync + std::fmt::Debug {
    async fn sweep(&self, cutoffs: &Cutoffs, batch: usize) -> Result<Option<Swept>, StoreError>;
}
