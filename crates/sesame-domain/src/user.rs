use serde_json::{Map, Value};
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

    /// The part after the `|`: the id within its connection (Auth0's `identities[0].user_id`).
    pub fn local(&self) -> &str {
        self.0.split_once('|').map_or(self.0.as_str(), |(_, id)| id)
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
    /// A blocked user can neither start nor complete a login, nor use a refresh token.
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub profile: Profile,
    /// What the user may see and change (Auth0's `user_metadata`).
    #[serde(default)]
    pub user_metadata: Map<String, Value>,
    /// What only the application may change (Auth0's `app_metadata`).
    #[serde(default)]
    pub app_metadata: Map<String, Value>,
}

/// The profile fields an operator may set; `None` shows Auth0's defaults (derived from the
/// identifier).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
}

impl User {
    /// A user who has not logged in yet.
    pub fn new(id: UserId, connection: ConnectionName, identifier: Identifier, now: OffsetDateTime) -> Self {
        Self {
            id,
            connection,
            identifier,
            email_verified: false,
            phone_verified: false,
            created_at: now,
            updated_at: now,
            last_login: None,
            logins_count: 0,
            blocked: false,
            profile: Profile::default(),
            user_metadata: Map::new(),
            app_metadata: Map::new(),
        }
    }

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

    /// The name shown: the one set, else the address or number (Auth0's default).
    pub fn name(&self) -> String {
        self.profile.name.clone().unwrap_or_else(|| match &self.identifier {
            Identifier::Email(e) => e.as_str().to_owned(),
            Identifier::Phone(p) => p.e164().to_owned(),
        })
    }

    /// The nickname shown: the one set, else the local part of the address, or the number.
    pub fn nickname(&self) -> String {
        self.profile.nickname.clone().unwrap_or_else(|| match &self.identifier {
            Identifier::Email(e) => e.local_part().to_owned(),
            Identifier::Phone(p) => p.e164().to_owned(),
        })
    }

    /// Whether each metadata serialises to at most `METADATA_MAX_BYTES`.
    pub fn metadata_within_limit(&self) -> bool {
        let size = |m: &Map<String, Value>| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
        size(&self.user_metadata) <= METADATA_MAX_BYTES && size(&self.app_metadata) <= METADATA_MAX_BYTES
    }

    /// Applies `patch` (the caller has checked it): what one `PATCH /api/v2/users/{id}` does.
    pub fn apply(&mut self, patch: &UserPatch, now: OffsetDateTime) {
        if let Some(blocked) = patch.blocked {
            self.blocked = blocked;
        }
        if let Some(identifier) = &patch.identifier {
            self.identifier = identifier.clone();
        }
        if let Some(v) = patch.email_verified {
            self.email_verified = v;
        }
        if let Some(v) = patch.phone_verified {
            self.phone_verified = v;
        }
        for (field, value) in [
            (&mut self.profile.name, &patch.name),
            (&mut self.profile.nickname, &patch.nickname),
            (&mut self.profile.picture, &patch.picture),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
        if let Some(m) = &patch.user_metadata {
            m.apply(&mut self.user_metadata);
        }
        if let Some(m) = &patch.app_metadata {
            m.apply(&mut self.app_metadata);
        }
        self.updated_at = now;
    }
}

/// The most `user_metadata` (and, apart, `app_metadata`) a user may hold, serialised: Auth0's
/// 16 KiB. Stores measure their own serialisation (Postgres: `jsonb` as text).
pub const METADATA_MAX_BYTES: usize = 16 * 1024;

/// A change to `user_metadata` or `app_metadata`, as Auth0 merges them: root-level keys are
/// set (a nested object replaces the old one whole), a key sent as `null` is removed, and an
/// empty object clears everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataPatch {
    Clear,
    Merge { set: Map<String, Value>, remove: Vec<String> },
}

impl MetadataPatch {
    pub fn from_object(object: &Map<String, Value>) -> Self {
        if object.is_empty() {
            return Self::Clear;
        }
        let mut set = Map::new();
        let mut remove = Vec::new();
        for (k, v) in object {
            if v.is_null() {
                remove.push(k.clone());
            } else {
                set.insert(k.clone(), v.clone());
            }
        }
        Self::Merge { set, remove }
    }

    pub fn apply(&self, target: &mut Map<String, Value>) {
        match self {
            Self::Clear => target.clear(),
            Self::Merge { set, remove } => {
                for k in remove {
                    target.remove(k);
                }
                for (k, v) in set {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// What one `PATCH /api/v2/users/{id}` changes; `None` leaves a field as it is. For the profile
/// fields, `Some(None)` goes back to the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub blocked: Option<bool>,
    /// A new address or number, of the same kind as the user's (same connection).
    pub identifier: Option<Identifier>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub name: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub picture: Option<Option<String>>,
    pub user_metadata: Option<MetadataPatch>,
    pub app_metadata: Option<MetadataPatch>,
}

/// Which users a listing wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFilter {
    All,
    /// The users with exactly this address or number, in any connection.
    Identifier(Identifier),
    Id(UserId),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_merges_at_the_root_as_auth0_does() {
        let mut m = json!({"a": 1, "nested": {"x": 1}, "gone": true}).as_object().cloned().unwrap_or_default();
        let patch = json!({"b": 2, "nested": {"y": 2}, "gone": null});
        MetadataPatch::from_object(patch.as_object().unwrap_or(&Map::new())).apply(&mut m);
        assert_eq!(Value::Object(m.clone()), json!({"a": 1, "b": 2, "nested": {"y": 2}}));
        MetadataPatch::from_object(&Map::new()).apply(&mut m);
        assert!(m.is_empty(), "an empty object clears the metadata");
    }
}
