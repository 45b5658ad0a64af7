use async_trait::async_trait;
use sesame_domain::{Email, PhoneNumber};

/// One rendered email. The bodies hold a code or link: implementations never log them.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct OutgoingEmail {
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// One rendered SMS. The text holds a code: implementations never log it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct OutgoingSms {
    pub to: PhoneNumber,
    pub text: String,
}

impl std::fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingEmail").field("to", &self.to).field("subject", &self.subject).finish_non_exhaustive()
    }
}
impl std::fmt::Debug for OutgoingSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingSms").field("to", &self.to).finish_non_exhaustive()
    }
}

/// What the provider said it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub provider_id: Option<String>,
}

/// Why a provider did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The provider refuses the recipient or message for good: the outbox gives up and records why.
    #[error("recipient rejected by provider: {0}")]
    Rejected(String),
    /// Anything worth retrying: throttling, 5xx, timeouts, no connection.
    #[error("provider unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Hands one rendered email to the provider.
/// # Errors
/// `Rejected` for a permanent refusal, `Unavailable` for anything worth retrying.
#[async_trait]
pub trait EmailSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, email: &OutgoingEmail) -> Result<DeliveryReceipt, SendError>;
}

/// Hands one rendered SMS to the provider.
/// # Errors
/// `Rejected` for a permanent refusal, `Unavailable` for anything worth retrying.
#[async_trait]
pub trait SmsSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, sms: &OutgoingSms) -> Result<DeliveryReceipt, SendError>;
}
