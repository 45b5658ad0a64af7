use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// What happened, named after Auth0's tenant-log event codes where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// `cls`: a code or link was issued (the message is in the outbox).
    CodeLinkSent,
    /// The provider took the message. No longer written (Auth0 logs no such event either: `cls`
    /// at the start, `fn` on a failure); kept so that older rows still read.
    NotificationSent,
    /// `fn`: the message could not be delivered (given up or dropped).
    NotificationFailed,
    /// `s`: a successful login.
    LoginSucceeded,
    /// `fp` / `fepotpft`: a failed code or link check.
    LoginFailed,
    /// `limit_*`: a request refused by a rate limit.
    RateLimited,
    /// `sapi`: a Management API call that changed something.
    ManagementApi,
    /// A login refused because the user is blocked.
    UserBlocked,
    /// `seccft`: a client's own token (`client_credentials`).
    ClientCredentials,
}

/// One audit record. Identifiers are masked; no code, token or secret ever goes here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub kind: AuditKind,
    pub client_id: Option<String>,
    pub connection: Option<String>,
    pub identifier: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(kind: AuditKind, at: OffsetDateTime) -> Self {
        Self { at, kind, client_id: None, connection: None, identifier: None, user_id: None, ip: None, detail: None }
    }
}

/// Records what happened. Writes are best effort for the flows: a failed audit write is logged,
/// it does not fail a login.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Records `events` (a delivery batch's outcomes) in one step where the log can.
    async fn record_many(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        for event in events {
            self.record(event).await?;
        }
        Ok(())
    }
    /// The newest events first, at most `limit`.
    async fn recent(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
    /// One user's events, newest first: page `page` (from 0) of `per_page`, and how many the
    /// user has in all.
    async fn for_user(&self, user_id: &str, page: u64, per_page: u64) -> Result<(Vec<AuditEvent>, u64), StoreError>;
}
