//! Sesame's domain: value types and rules for passwordless login.
//!
//! No I/O, no async runtime, no framework types. Everything here is parsed at the edge
//! (`Email::parse`, `PhoneNumber::parse`, `Send::parse`, …) so that nothing downstream checks it again.

mod challenge;
mod client;
mod connection;
mod identifier;
mod message;
mod secret;
mod user;

pub use challenge::{AuthParams, Challenge, ChallengeKey, CheckOutcome, NewChallenge, Proof};
pub use client::{AppType, AuthMethod, Client, ClientId, GrantType};
pub use connection::{
    CodePolicy, Connection, ConnectionLimits, ConnectionName, PolicyError, Rate, Send, SendError, Strategy,
};
pub use identifier::{CostlyKind, Email, Identifier, IdentifierError, PhoneNumber};
pub use message::{Channel, MessageId, OutboxMessage, SealedMessage};
pub use secret::{LinkToken, OtpCode, SecretHash};
pub use user::{METADATA_MAX_BYTES, MetadataPatch, Profile, User, UserFilter, UserId, UserPatch};

/// A 24-hex-digit identifier, the shape Auth0 uses for `_id` and user ids (a Mongo ObjectId).
pub fn object_id(bytes: [u8; 12]) -> String {
    hex::encode(bytes)
}
