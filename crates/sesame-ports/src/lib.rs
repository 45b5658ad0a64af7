//! The ports Sesame's flows need, over domain types. Each trait's doc comment is its contract;
//! the `testkit` feature holds the contract tests that every adapter crate runs against itself.

mod audit;
mod clock;
mod delivery;
mod error;
mod grants;
mod keys;
mod limits;
mod stores;
mod tokens;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use audit::{AuditEvent, AuditKind, AuditLog};
pub use clock::{Clock, Random, SystemClock};
pub use delivery::{DeliveryReceipt, EmailSender, OutgoingEmail, OutgoingSms, SendError, SmsSender};
pub use error::StoreError;
pub use grants::{AuthorizationCode, GrantStore, OpaqueToken, RefreshOutcome, RefreshToken};
pub use keys::{KeyState, KeyStore, SigningKeyRecord};
pub use limits::{LimitDecision, LimitError, LimitRule, RateLimiter, ReplayGuard};
pub use stores::{
    Backlog, ChallengeStore, ClaimedMessage, ClientStore, ConnectionStore, Cutoffs, DeliveryState, LoginOutcome,
    LoginStore, LoginWrite, Outbox, Retention, Settled, Settlement, StartOutcome, Swept, UserPage, UserStore,
};
pub use tokens::{
    AssertionCheck, AssertionRejected, ClientAssertionVerifier, TokenError, TokenIssuer, TokenKind,
    VerifiedClientAssertion,
};
