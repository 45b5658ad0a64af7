use time::OffsetDateTime;

/// Which way a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

/// The identifier of an outbox message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

/// A rendered message, encrypted (AEAD) by the flows before it is stored: the text holds a
/// code or link, and no store ever keeps those in the clear.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedMessage(pub Vec<u8>);

impl std::fmt::Debug for SealedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedMessage({} bytes)", self.0.len())
    }
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxMessage {
    pub id: MessageId,
    pub channel: Channel,
    /// The normalised address or E.164 number it goes to.
    pub recipient: String,
    pub sealed: SealedMessage,
    pub created_at: OffsetDateTime,
    /// After this the code inside is dead: the message is dropped, not sent.
    pub expires_at: OffsetDateTime,
}
