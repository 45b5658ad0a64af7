use time::OffsetDateTime;

use crate::{ConnectionName, Identifier};

/// `email|<24 hex>` or `sms|<24 hex>`, Auth0's passwordless user ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user of a passwordless connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: UserId,
    pub connection: ConnectionName,
    pub identifier: Identifier,
    pub email_verified: bool,
    pub phone_verified: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_login: Option<OffsetDateTime>,
    pub logins_count: u64,
}

impl User {
    pub fn email(&self) -> Option<&str> {
        match &self.identifier {
            Identifier::Email(e) => Some(e.as_str()),
            Identifier::Phone(_) => None,
        }
    }

    pub fn phone_number(&self) -> Option<&str> {
        match &self.identifier {
            Identifier::Phone(p) => Some(p.e164()),
            Identifier::Email(_) => None,
        }
    }
}
