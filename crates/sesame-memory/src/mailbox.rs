use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use sesame_domain::Channel;
use sesame_ports::{Clock, DeliveryReceipt, EmailSender, OutgoingEmail, OutgoingSms, SendError, SmsSender};
use time::OffsetDateTime;

/// One message the mailbox "sent".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailboxEntry {
    pub to: String,
    pub channel: Channel,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub sent_at: OffsetDateTime,
}

/// The development sender: keeps every email and SMS so a person or a test can read them.
/// It holds codes in the clear, so it is for development only (`sesame serve` enables
/// `/dev/mailbox` only while the mailbox delivers).
#[derive(Debug)]
pub struct Mailbox {
    entries: Mutex<VecDeque<MailboxEntry>>,
    clock: std::sync::Arc<dyn Clock>,
}

impl Mailbox {
    /// Keeps at most this many messages; older ones fall off.
    const CAPACITY: usize = 10_000;

    pub fn new(clock: std::sync::Arc<dyn Clock>) -> Self {
        Self { entries: Mutex::new(VecDeque::new()), clock }
    }

    /// Newest first, optionally only those to `to`.
    pub fn list(&self, to: Option<&str>) -> Vec<MailboxEntry> {
        let entries = crate::lock(&self.entries);
        entries.iter().rev().filter(|e| to.is_none_or(|t| e.to.eq_ignore_ascii_case(t))).cloned().collect()
    }

    fn push(&self, entry: MailboxEntry) {
        let mut entries = crate::lock(&self.entries);
        if entries.len() >= Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
}

#[async_trait]
impl EmailSender for Mailbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<DeliveryReceipt, SendError> {
        self.push(MailboxEntry {
            to: email.to.as_str().to_owned(),
            channel: Channel::Email,
            subject: Some(email.subject.clone()),
            text: email.text.clone(),
            html: email.html.clone(),
            sent_at: self.clock.now(),
        });
        Ok(DeliveryReceipt::default())
    }
}

#[async_trait]
impl SmsSender for Mailbox {
    async fn send(&self, sms: &OutgoingSms) -> Result<DeliveryReceipt, SendError> {
        self.push(MailboxEntry {
            to: sms.to.e164().to_owned(),
            channel: Channel::Sms,
            subject: None,
            text: sms.text.clone(),
            html: None,
            sent_at: self.clock.now(),
        });
        Ok(DeliveryReceipt::default())
    }
}
