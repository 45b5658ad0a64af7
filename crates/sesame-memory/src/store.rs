use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sesame_domain::{
    Challenge, ChallengeKey, CheckOutcome, Client, ClientId, CodePolicy, Connection, ConnectionName, Identifier,
    MessageId, NewChallenge, OutboxMessage, Proof, SecretHash, User, UserFilter, UserId, UserPatch,
};
use sesame_ports::{
    AuditEvent, AuditLog, AuthorizationCode, Backlog, ChallengeStore, ClaimedMessage, ClientStore, ConnectionStore,
    Cutoffs, DeliveryState, GrantStore, KeyState, KeyStore, LoginOutcome, LoginStore, LoginWrite, OpaqueToken, Outbox,
    RefreshOutcome, RefreshToken, Retention, Settled, Settlement, SigningKeyRecord, StartOutcome, StoreError, Swept,
    UserPage, UserStore,
};
use time::OffsetDateTime;

#[derive(Debug)]
struct OutboxRow {
    message: OutboxMessage,
    state: DeliveryState,
    attempts: u32,
    due_at: OffsetDateTime,
    lease_until: Option<OffsetDateTime>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct RefreshRow {
    token: RefreshToken,
    spent: bool,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<ClientId, Client>,
    connections: HashMap<ConnectionName, Connection>,
    challenges: HashMap<ChallengeKey, Challenge>,
    /// Every challenge by expiry, earliest first: retention reads only its dead front.
    challenges_by_expiry: BTreeSet<(OffsetDateTime, ChallengeKey)>,
    outbox: HashMap<MessageId, OutboxRow>,
    /// Each challenge's message, so that a new start of the key ends the earlier one (as on
    /// Postgres, where the message lives on its challenge's row).
    message_of: HashMap<ChallengeKey, MessageId>,
    /// The pending messages, oldest first: claims look only here, never at finished rows.
    pending: BTreeSet<(OffsetDateTime, MessageId)>,
    /// The failed and dropped messages by expiry (a sent one leaves at once).
    ended_by_expiry: BTreeSet<(OffsetDateTime, MessageId)>,
    users: HashMap<(ConnectionName, Identifier), User>,
    user_ids: HashMap<UserId, (ConnectionName, Identifier)>,
    /// The connections each identifier has a user in (users-by-email looks across them).
    users_by_identifier: HashMap<Identifier, BTreeSet<ConnectionName>>,
    /// Every user by creation, for listing pages.
    users_by_created: BTreeSet<(OffsetDateTime, UserId)>,
    /// Each user's codes and tokens, so that deleting a user takes them without a scan.
    user_grants: HashMap<UserId, HashSet<(Grant, [u8; 32])>>,
    codes: HashMap<SecretHash, AuthorizationCode>,
    opaque: HashMap<SecretHash, OpaqueToken>,
    refresh: HashMap<SecretHash, RefreshRow>,
    /// Authorization codes, opaque access tokens and refresh tokens by expiry (the hash bytes).
    grants_by_expiry: BTreeSet<(OffsetDateTime, Grant, [u8; 32])>,
    revoked_families: std::collections::HashSet<String>,
    keys: Vec<SigningKeyRecord>,
    audit: Vec<AuditEvent>,
}

/// Which map of grants an expiry entry points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Grant {
    Code,
    Opaque,
    Refresh,
}

/// Every store port in process memory, behind one lock: each method is one atomic step.
///
/// Nothing scans a whole map under the lock: every row that expires is also in an ordered
/// index by expiry, so retention (the sweeper of `serve` and `worker`, on by default) takes
/// only the dead front, O(log n) per row, and no request ever pays for a sweep. With
/// `[retention] enabled = false` nothing is deleted, as on Postgres.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// At most this many index entries are looked at per row a sweep may delete: entries whose row
/// went earlier (a code taken, a message sent) are skipped, and one call stays short.
const LOOK_PER_ROW: usize = 4;

impl State {
    /// Keeps the newest 90 000–100 000 events.
    fn record(&mut self, event: AuditEvent) {
        if self.audit.len() >= 100_000 {
            self.audit.drain(..10_000);
        }
        self.audit.push(event);
    }

    /// Takes a message out of the outbox, whatever its state.
    fn remove_message(&mut self, id: &MessageId) {
        if let Some(row) = self.outbox.remove(id) {
            self.pending.remove(&(row.message.created_at, id.clone()));
            self.ended_by_expiry.remove(&(row.message.expires_at, id.clone()));
        }
    }

    fn finish(&mut self, id: &MessageId, state: DeliveryState) {
        if let Some(row) = self.outbox.get_mut(id) {
            self.pending.remove(&(row.message.created_at, id.clone()));
            if row.state == DeliveryState::Pending {
                self.ended_by_expiry.insert((row.message.expires_at, id.clone()));
            }
            row.state = state;
            row.lease_until = None;
            // The sealed body is needed no more.
            row.message.sealed.0 = Vec::new();
        }
    }

    fn index_grant(&mut self, kind: Grant, hash: &SecretHash, expires_at: OffsetDateTime, user: &UserId) {
        self.grants_by_expiry.insert((expires_at, kind, hash.0));
        self.user_grants.entry(user.clone()).or_default().insert((kind, hash.0));
    }

    fn unown_grant(&mut self, kind: Grant, hash: &SecretHash, user: &UserId) {
        if let Some(set) = self.user_grants.get_mut(user) {
            set.remove(&(kind, hash.0));
            if set.is_empty() {
                self.user_grants.remove(user);
            }
        }
    }

    /// Removes one grant row and its index entries.
    fn remove_grant(&mut self, kind: Grant, hash: &SecretHash) -> bool {
        let (user, expires_at) = match kind {
            Grant::Code => match self.codes.remove(hash) {
                Some(c) => (c.user_id, c.expires_at),
                None => return false,
            },
            Grant::Opaque => match self.opaque.remove(hash) {
                Some(t) => (t.user_id, t.expires_at),
                None => return false,
            },
            Grant::Refresh => match self.refresh.remove(hash) {
                Some(r) => (r.token.user_id, r.token.expires_at),
                None => return false,
            },
        };
        self.grants_by_expiry.remove(&(expires_at, kind, hash.0));
        self.unown_grant(kind, hash, &user);
        true
    }

    fn user_key(&self, id: &UserId) -> Option<(ConnectionName, Identifier)> {
        self.user_ids.get(id).cloned()
    }

    fn insert_user(&mut self, user: User) {
        let key = (user.connection.clone(), user.identifier.clone());
        self.user_ids.insert(user.id.clone(), key.clone());
        self.users_by_created.insert((user.created_at, user.id.clone()));
        self.users_by_identifier.entry(key.1.clone()).or_default().insert(key.0.clone());
        self.users.insert(key, user);
    }

    fn remove_user(&mut self, key: &(ConnectionName, Identifier)) -> Option<User> {
        let user = self.users.remove(key)?;
        self.user_ids.remove(&user.id);
        self.users_by_created.remove(&(user.created_at, user.id.clone()));
        if let Some(set) = self.users_by_identifier.get_mut(&key.1) {
            set.remove(&key.0);
            if set.is_empty() {
                self.users_by_identifier.remove(&key.1);
            }
        }
        Some(user)
    }

    /// Challenges that expired before `cutoff`, at most `batch`; and whether more may remain.
    fn expire_challenges(&mut self, cutoff: OffsetDateTime, batch: usize) -> (usize, bool) {
        let mut removed = 0;
        for _ in 0..batch.saturating_mul(LOOK_PER_ROW) {
            if removed >= batch || self.challenges_by_expiry.first().is_none_or(|(at, _)| *at >= cutoff) {
                break;
            }
            let Some((at, key)) = self.challenges_by_expiry.pop_first() else { break };
            if self.challenges.get(&key).is_some_and(|c| c.challenge.expires_at == at) {
                self.challenges.remove(&key);
                // Its message stays as long as its state is kept (`expire_outbox`).
                self.message_of.remove(&key);
                removed += 1;
            }
        }
        (removed, self.challenges_by_expiry.first().is_some_and(|(at, _)| *at < cutoff))
    }

    /// Grants that expired before `cutoff`, at most `batch`; and whether more may remain.
    fn expire_grants(&mut self, cutoff: OffsetDateTime, batch: usize) -> (usize, bool) {
        let mut removed = 0;
        for _ in 0..batch.saturating_mul(LOOK_PER_ROW) {
            if removed >= batch || self.grants_by_expiry.first().is_none_or(|(at, _, _)| *at >= cutoff) {
                break;
            }
            let Some((_, kind, bytes)) = self.grants_by_expiry.first().copied() else { break };
            let hash = SecretHash(bytes);
            let gone = self.remove_grant(kind, &hash);
            if !gone {
                self.grants_by_expiry.pop_first();
            }
            removed += usize::from(gone);
        }
        (removed, self.grants_by_expiry.first().is_some_and(|(at, _, _)| *at < cutoff))
    }

    /// Failed and dropped messages that expired before `cutoff`, at most `batch`.
    fn expire_outbox(&mut self, cutoff: OffsetDateTime, batch: usize) -> (usize, bool) {
        let mut removed = 0;
        while removed < batch && self.ended_by_expiry.first().is_some_and(|(at, _)| *at < cutoff) {
            let Some((_, id)) = self.ended_by_expiry.pop_first() else { break };
            if self.outbox.get(&id).is_some_and(|r| r.state != DeliveryState::Pending) {
                self.outbox.remove(&id);
                removed += 1;
            }
        }
        (removed, self.ended_by_expiry.first().is_some_and(|(at, _)| *at < cutoff))
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        Ok(self.state().clients.get(id).cloned())
    }
    async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError> {
        Ok(self.state().clients.values().any(|c| c.allowed_origins.iter().any(|o| o == origin)))
    }
    async fn list(&self) -> Result<Vec<Client>, StoreError> {
        let mut all: Vec<Client> = self.state().clients.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }
    async fn save(&self, client: &Client) -> Result<(), StoreError> {
        self.state().clients.insert(client.id.clone(), client.clone());
        Ok(())
    }
    async fn delete(&self, id: &ClientId) -> Result<bool, StoreError> {
        Ok(self.state().clients.remove(id).is_some())
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError> {
        Ok(self.state().connections.get(name).cloned())
    }
    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        let mut all: Vec<Connection> = self.state().connections.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }
    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        self.state().connections.insert(connection.name.clone(), connection.clone());
        Ok(())
    }
}

/// In memory the steps are in-process calls: the check, then the login, the token, the event.
#[async_trait]
impl LoginStore for MemoryStore {
    async fn check_and_login(&self, w: LoginWrite) -> Result<LoginOutcome, StoreError> {
        match self.check(&w.key, w.proof, true, w.now).await? {
            CheckOutcome::Accepted(_) => {}
            refused => return Ok(LoginOutcome::Refused(refused)),
        }
        let user = self.record_login(&w.key.connection, &w.key.identifier, w.new_user_id, w.now).await?;
        if !user.blocked {
            if let Some(token) = w.access_token {
                self.save_opaque(OpaqueToken { user_id: user.id.clone(), ..token }).await?;
            }
            let mut event = w.event;
            event.user_id = Some(user.id.0.clone());
            self.record(event).await?;
        }
        Ok(LoginOutcome::LoggedIn(Box::new(user)))
    }
}

#[async_trait]
impl ChallengeStore for MemoryStore {
    async fn start(
        &self,
        challenge: NewChallenge,
        message: OutboxMessage,
        event: AuditEvent,
        claimed_until: Option<OffsetDateTime>,
    ) -> Result<StartOutcome, StoreError> {
        let mut state = self.state();
        let user = (challenge.key.connection.clone(), challenge.key.identifier.clone());
        if state.users.get(&user).is_some_and(|u| u.blocked) {
            return Ok(StartOutcome::Blocked);
        }
        state.record(event);
        // The key's earlier message ends with its code: unsent, it is never sent (a worker
        // already sending it finishes, and its settlement then finds nothing).
        if let Some(earlier) = state.message_of.insert(challenge.key.clone(), message.id.clone()) {
            state.remove_message(&earlier);
        }
        let due_at = message.created_at;
        state.pending.insert((message.created_at, message.id.clone()));
        state.outbox.insert(
            message.id.clone(),
            OutboxRow {
                message,
                state: DeliveryState::Pending,
                attempts: u32::from(claimed_until.is_some()),
                due_at,
                lease_until: claimed_until,
                last_error: None,
            },
        );
        let (key, expires_at) = (challenge.key.clone(), challenge.expires_at);
        if let Some(replaced) =
            state.challenges.insert(key.clone(), Challenge { challenge, attempts: 0, consumed_at: None })
        {
            state.challenges_by_expiry.remove(&(replaced.challenge.expires_at, key.clone()));
        }
        state.challenges_by_expiry.insert((expires_at, key));
        Ok(StartOutcome::Stored)
    }

    async fn check(
        &self,
        key: &ChallengeKey,
        proof: Proof,
        consume: bool,
        now: OffsetDateTime,
    ) -> Result<CheckOutcome, StoreError> {
        let mut state = self.state();
        let Some(live) = state.challenges.get_mut(key) else {
            return Ok(CheckOutcome::NotFound);
        };
        if live.consumed_at.is_some() {
            return Ok(CheckOutcome::NotFound);
        }
        let matches = match proof {
            Proof::Code(h) => live.challenge.code_hash == h,
            Proof::Link(h) => live.challenge.link_hash.is_some_and(|l| l == h),
        };
        // Why a dead code is dead is told only to whoever holds it.
        if now >= live.challenge.expires_at {
            return Ok(if matches { CheckOutcome::Expired } else { CheckOutcome::NotFound });
        }
        if live.attempts >= CodePolicy::MAX_ATTEMPTS {
            return Ok(if matches { CheckOutcome::Exhausted } else { CheckOutcome::NotFound });
        }
        if matches {
            if consume {
                live.consumed_at = Some(now);
            }
            return Ok(CheckOutcome::Accepted(Box::new(live.clone())));
        }
        live.attempts += 1;
        Ok(CheckOutcome::Wrong { attempts_left: CodePolicy::MAX_ATTEMPTS.saturating_sub(live.attempts) })
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn record_login(
        &self,
        connection: &ConnectionName,
        identifier: &Identifier,
        new_id: UserId,
        now: OffsetDateTime,
    ) -> Result<User, StoreError> {
        let mut state = self.state();
        let key = (connection.clone(), identifier.clone());
        if !state.users.contains_key(&key) {
            state.insert_user(User::new(new_id, connection.clone(), identifier.clone(), now));
        }
        let user = state.users.get_mut(&key).ok_or_else(|| anyhow::anyhow!("user vanished under the lock"))?;
        if user.blocked {
            // Refused by the flow: not a login.
            return Ok(user.clone());
        }
        match identifier {
            Identifier::Email(_) => user.email_verified = true,
            Identifier::Phone(_) => user.phone_verified = true,
        }
        user.logins_count += 1;
        user.last_login = Some(now);
        user.updated_at = now;
        Ok(user.clone())
    }

    async fn find(&self, connection: &ConnectionName, identifier: &Identifier) -> Result<Option<User>, StoreError> {
        Ok(self.state().users.get(&(connection.clone(), identifier.clone())).cloned())
    }

    async fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let state = self.state();
        Ok(state.user_ids.get(id).and_then(|key| state.users.get(key)).cloned())
    }

    async fn list(&self, filter: &UserFilter, page: u64, per_page: u64) -> Result<UserPage, StoreError> {
        let state = self.state();
        let offset = usize::try_from(page.saturating_mul(per_page)).unwrap_or(usize::MAX);
        let take = usize::try_from(per_page).unwrap_or(usize::MAX);
        let mut matching: Vec<&User> = match filter {
            UserFilter::All => {
                let users = state
                    .users_by_created
                    .iter()
                    .skip(offset)
                    .take(take)
                    .filter_map(|(_, id)| state.user_ids.get(id).and_then(|k| state.users.get(k)))
                    .cloned()
                    .collect();
                return Ok(UserPage { users, total: state.users.len() as u64 });
            }
            UserFilter::Id(id) => state.user_ids.get(id).and_then(|k| state.users.get(k)).into_iter().collect(),
            UserFilter::Identifier(identifier) => state
                .users_by_identifier
                .get(identifier)
                .into_iter()
                .flatten()
                .filter_map(|c| state.users.get(&(c.clone(), identifier.clone())))
                .collect(),
        };
        matching.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let total = matching.len() as u64;
        Ok(UserPage { users: matching.into_iter().skip(offset).take(take).cloned().collect(), total })
    }

    async fn create(&self, user: &User) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.users.contains_key(&(user.connection.clone(), user.identifier.clone()))
            || state.user_ids.contains_key(&user.id)
        {
            return Err(StoreError::Conflict("the user already exists".into()));
        }
        state.insert_user(user.clone());
        Ok(())
    }

    async fn update(&self, id: &UserId, patch: &UserPatch, now: OffsetDateTime) -> Result<Option<User>, StoreError> {
        let mut state = self.state();
        let Some(key) = state.user_key(id) else { return Ok(None) };
        let new_key = patch.identifier.as_ref().map(|i| (key.0.clone(), i.clone())).filter(|k| *k != key);
        if let Some(new_key) = &new_key
            && state.users.contains_key(new_key)
        {
            return Err(StoreError::Conflict("another user has this identifier".into()));
        }
        let Some(before) = state.users.get(&key) else { return Ok(None) };
        let mut user = before.clone();
        user.apply(patch, now);
        if !user.metadata_within_limit() {
            return Err(StoreError::TooLarge("metadata".into()));
        }
        state.remove_user(&key);
        state.insert_user(user.clone());
        Ok(Some(user))
    }

    async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(key) = state.user_key(id) else { return Ok(false) };
        if state.remove_user(&key).is_none() {
            return Ok(false);
        }
        for (kind, bytes) in state.user_grants.remove(id).unwrap_or_default() {
            state.remove_grant(kind, &SecretHash(bytes));
        }
        // A user's challenges are few and short-lived, but they are found by identifier only:
        // this scan is the price of deleting someone (rare). Their messages go with them (as on
        // Postgres, where a message lives on its challenge's row).
        let (connection, identifier) = key;
        let challenges: Vec<ChallengeKey> = state
            .challenges
            .keys()
            .filter(|k| k.connection == connection && k.identifier == identifier)
            .cloned()
            .collect();
        for k in challenges {
            if let Some(m) = state.message_of.remove(&k) {
                state.remove_message(&m);
            }
            if let Some(c) = state.challenges.remove(&k) {
                state.challenges_by_expiry.remove(&(c.challenge.expires_at, k));
            }
        }
        state.audit.retain(|e| e.user_id.as_deref() != Some(id.as_str()));
        Ok(true)
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let mut state = self.state();
        let State { pending, outbox, .. } = &mut *state;
        let mut claimed = Vec::new();
        for (_, id) in pending.iter() {
            if claimed.len() >= max {
                break;
            }
            let Some(row) = outbox.get_mut(id) else { continue };
            if row.due_at <= now && row.lease_until.is_none_or(|l| l <= now) {
                row.attempts += 1;
                row.lease_until = Some(now + lease);
                claimed.push(ClaimedMessage { message: row.message.clone(), attempt: row.attempts });
            }
        }
        Ok(claimed)
    }

    async fn claim(
        &self,
        id: &MessageId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        let mut state = self.state();
        let Some(row) = state.outbox.get_mut(id) else {
            return Ok(None);
        };
        if row.state != DeliveryState::Pending || row.due_at > now || row.lease_until.is_some_and(|l| l > now) {
            return Ok(None);
        }
        row.attempts += 1;
        row.lease_until = Some(now + lease);
        Ok(Some(ClaimedMessage { message: row.message.clone(), attempt: row.attempts }))
    }

    async fn settle(&self, batch: &[Settled], _now: OffsetDateTime) -> Result<(), StoreError> {
        let mut state = self.state();
        for Settled { id, outcome } in batch {
            if state.outbox.get(id).is_none_or(|row| row.state != DeliveryState::Pending) {
                continue;
            }
            match outcome {
                Settlement::Sent => {
                    if let Some(row) = state.outbox.remove(id) {
                        state.pending.remove(&(row.message.created_at, id.clone()));
                    }
                }
                Settlement::Failed(reason) => state.finish(id, DeliveryState::Failed(reason.clone())),
                Settlement::Dropped => state.finish(id, DeliveryState::Dropped),
                Settlement::Retry { at, error } => {
                    if let Some(row) = state.outbox.get_mut(id) {
                        row.due_at = *at;
                        row.lease_until = None;
                        row.last_error = Some(error.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn state(&self, id: &MessageId) -> Result<Option<DeliveryState>, StoreError> {
        Ok(self.state().outbox.get(id).map(|r| r.state.clone()))
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let state = self.state();
        Ok(state
            .pending
            .iter()
            .filter_map(|(_, id)| state.outbox.get(id))
            .map(|r| r.lease_until.map_or(r.due_at, |l| l.max(r.due_at)))
            .min())
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let state = self.state();
        Ok(Backlog { pending: state.pending.len() as u64, oldest: state.pending.first().map(|(at, _)| *at) })
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn save_code(&self, code: AuthorizationCode) -> Result<(), StoreError> {
        let mut state = self.state();
        state.index_grant(Grant::Code, &code.code_hash, code.expires_at, &code.user_id);
        state.codes.insert(code.code_hash, code);
        Ok(())
    }
    async fn take_code(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<AuthorizationCode>, StoreError> {
        let mut state = self.state();
        let code = state.codes.get(hash).cloned();
        state.remove_grant(Grant::Code, hash);
        Ok(code.filter(|c| c.expires_at > now))
    }
    async fn save_opaque(&self, token: OpaqueToken) -> Result<(), StoreError> {
        let mut state = self.state();
        state.index_grant(Grant::Opaque, &token.token_hash, token.expires_at, &token.user_id);
        state.opaque.insert(token.token_hash, token);
        Ok(())
    }
    async fn find_opaque(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<OpaqueToken>, StoreError> {
        Ok(self.state().opaque.get(hash).filter(|t| t.expires_at > now).cloned())
    }
    async fn save_refresh(&self, token: RefreshToken) -> Result<(), StoreError> {
        let mut state = self.state();
        state.index_grant(Grant::Refresh, &token.token_hash, token.expires_at, &token.user_id);
        state.refresh.insert(token.token_hash, RefreshRow { token, spent: false });
        Ok(())
    }
    async fn revoke_refresh(&self, client: &ClientId, presented: &SecretHash) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(family) =
            state.refresh.get(presented).filter(|r| r.token.client_id == *client).map(|r| r.token.family_id.clone())
        else {
            return Ok(false);
        };
        Ok(state.revoked_families.insert(family))
    }

    async fn rotate_refresh(
        &self,
        client: &ClientId,
        presented: &SecretHash,
        next_hash: SecretHash,
        next_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut state = self.state();
        let Some(row) = state.refresh.get(presented) else {
            return Ok(RefreshOutcome::Invalid);
        };
        let family = row.token.family_id.clone();
        if row.token.client_id != *client || state.revoked_families.contains(&family) || row.token.expires_at <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if row.spent {
            state.revoked_families.insert(family);
            return Ok(RefreshOutcome::Reused);
        }
        let current = row.token.clone();
        if let Some(row) = state.refresh.get_mut(presented) {
            row.spent = true;
        }
        let expires_at = next_expires_at.min(current.expires_at);
        let next = RefreshToken { token_hash: next_hash, expires_at, ..current.clone() };
        state.index_grant(Grant::Refresh, &next_hash, expires_at, &current.user_id);
        state.refresh.insert(next_hash, RefreshRow { token: next, spent: false });
        Ok(RefreshOutcome::Rotated(current))
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn active(&self) -> Result<Option<SigningKeyRecord>, StoreError> {
        Ok(self.state().keys.iter().find(|k| k.state == KeyState::Active).cloned())
    }
    async fn published(&self, now: OffsetDateTime) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Ok(self
            .state()
            .keys
            .iter()
            .filter(|k| match k.state {
                KeyState::Active => true,
                KeyState::Retiring { until } => until > now,
                KeyState::Retired => false,
            })
            .cloned()
            .collect())
    }
    async fn activate(&self, key: SigningKeyRecord, retire_until: OffsetDateTime) -> Result<(), StoreError> {
        let mut state = self.state();
        for k in &mut state.keys {
            if k.state == KeyState::Active {
                k.state = KeyState::Retiring { until: retire_until };
            }
        }
        state.keys.push(SigningKeyRecord { state: KeyState::Active, ..key });
        Ok(())
    }
    async fn retire(&self, kid: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.keys.iter_mut().find(|k| k.kid == kid) {
            Some(k) if k.state != KeyState::Active => {
                k.state = KeyState::Retired;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.state().record(event);
        Ok(())
    }
    async fn record_many(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        let mut state = self.state();
        for event in events {
            state.record(event);
        }
        Ok(())
    }
    async fn recent(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let state = self.state();
        let mut events: Vec<AuditEvent> = state.audit.iter().rev().take(limit).cloned().collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.at));
        Ok(events)
    }
    async fn for_user(&self, user_id: &str, page: u64, per_page: u64) -> Result<(Vec<AuditEvent>, u64), StoreError> {
        let state = self.state();
        let offset = usize::try_from(page.saturating_mul(per_page)).unwrap_or(usize::MAX);
        let take = usize::try_from(per_page).unwrap_or(usize::MAX);
        let mine = || state.audit.iter().rev().filter(|e| e.user_id.as_deref() == Some(user_id));
        Ok((mine().skip(offset).take(take).cloned().collect(), mine().count() as u64))
    }
}

#[async_trait]
impl Retention for MemoryStore {
    async fn sweep(&self, cutoffs: &Cutoffs, batch: usize) -> Result<Option<Swept>, StoreError> {
        let mut state = self.state();
        let (challenges, more_challenges) = state.expire_challenges(cutoffs.challenges, batch);
        let (grants, more_grants) = state.expire_grants(cutoffs.grants, batch);
        // A message ends by its expiry at the latest: one that expired before the cutoff ended before it.
        let (outbox, more_outbox) = state.expire_outbox(cutoffs.outbox, batch);
        let audit = match cutoffs.audit {
            Some(before) => {
                let mut removed = 0;
                state.audit.retain(|e| {
                    let goes = removed < batch && e.at < before;
                    removed += usize::from(goes);
                    !goes
                });
                removed as u64
            }
            None => 0,
        };
        let more = more_challenges || more_grants || more_outbox || audit >= batch as u64;
        let (challenges, grants, outbox) = (challenges as u64, grants as u64, outbox as u64);
        Ok(Some(Swept { challenges, grants, outbox, audit, more }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sesame_domain::{ClientId, SecretHash, UserId};
    use sesame_ports::testkit::{challenge, email_key, hash, issued, message, t0};
    use sesame_ports::{ChallengeStore, Cutoffs, DeliveryState, GrantStore, OpaqueToken, Outbox, Retention};
    use time::Duration;

    use super::MemoryStore;

    fn opaque(n: u32, expires_at: time::OffsetDateTime) -> OpaqueToken {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        OpaqueToken {
            token_hash: SecretHash(bytes),
            client_id: ClientId::new("app".to_owned()),
            user_id: UserId("email|0123456789abcdef01234567".into()),
            scope: "openid".into(),
            expires_at,
        }
    }

    fn cutoffs(at: time::OffsetDateTime) -> Cutoffs {
        Cutoffs { challenges: at, grants: at, outbox: at, audit: None }
    }

    /// The expiry indexes hold one entry per live row: a replaced challenge, a taken code and a
    /// swept row leave nothing behind (else the index would be the leak the maps are not).
    #[tokio::test]
    async fn expiry_indexes_stay_the_size_of_their_maps() {
        let store = Arc::new(MemoryStore::new());
        let key = email_key("app");
        for i in 0..1000 {
            let at = t0() + Duration::seconds(i);
            store.start(challenge(&key, hash(1), None, at), message(&key, at), issued(at), None).await.unwrap();
        }
        {
            let state = store.state();
            assert_eq!(state.challenges.len(), 1);
            assert_eq!(state.challenges_by_expiry.len(), 1, "a replaced challenge leaves its index entry");
        }
        // 20 000 access tokens, the first half dead at the cutoff.
        let cutoff = t0() + Duration::hours(2);
        for n in 0..20_000u32 {
            let expires = if n % 2 == 0 { cutoff - Duration::seconds(1) } else { cutoff + Duration::hours(1) };
            store.save_opaque(opaque(n, expires)).await.unwrap();
        }
        // A batch takes at most its size, then says there is more.
        let swept = store.sweep(&cutoffs(cutoff), 1000).await.unwrap().unwrap();
        assert_eq!((swept.grants, swept.more), (1000, true), "{swept:?}");
        while store.sweep(&cutoffs(cutoff), 1000).await.unwrap().unwrap().more {}
        {
            let state = store.state();
            assert_eq!(state.opaque.len(), 10_000, "only the dead tokens went");
            assert!(state.opaque.values().all(|t| t.expires_at > cutoff));
            assert_eq!(state.grants_by_expiry.len(), 10_000);
            assert!(state.challenges.is_empty() && state.challenges_by_expiry.is_empty(), "the dead challenge went");
        }
    }

    #[tokio::test]
    async fn a_failed_message_is_swept_by_its_expiry_and_a_sent_one_is_never_indexed() {
        let store = Arc::new(MemoryStore::new());
        let (failed_key, sent_key) = (email_key("a"), email_key("b"));
        let (failed, sent) = (message(&failed_key, t0()), message(&sent_key, t0()));
        for (key, m) in [(&failed_key, &failed), (&sent_key, &sent)] {
            store.start(challenge(key, hash(1), None, t0()), m.clone(), issued(t0()), None).await.unwrap();
        }
        store.finish(&failed.id, DeliveryState::Failed("refused".into()), t0()).await.unwrap();
        store.finish(&sent.id, DeliveryState::Sent, t0()).await.unwrap();
        assert_eq!(store.state().ended_by_expiry.len(), 1);
        let before = failed.expires_at - Duration::seconds(1);
        assert_eq!(store.sweep(&cutoffs(before), 10).await.unwrap().unwrap().outbox, 0, "not before its expiry");
        let after = failed.expires_at + Duration::seconds(1);
        assert_eq!(store.sweep(&cutoffs(after), 10).await.unwrap().unwrap().outbox, 1);
        assert_eq!(Outbox::state(&*store, &failed.id).await.unwrap(), None);
        assert!(store.state().ended_by_expiry.is_empty());
    }

    #[tokio::test]
    async fn a_taken_code_leaves_the_index() {
        let store = Arc::new(MemoryStore::new());
        let code = sesame_ports::AuthorizationCode {
            code_hash: hash(9),
            client_id: ClientId::new("app".to_owned()),
            user_id: UserId("email|0123456789abcdef01234567".into()),
            redirect_uri: "http://localhost:3000/callback".into(),
            scope: "openid".into(),
            audience: None,
            nonce: None,
            code_challenge: None,
            expires_at: t0() + Duration::minutes(1),
        };
        store.save_code(code).await.unwrap();
        assert!(store.take_code(&hash(9), t0()).await.unwrap().is_some());
        assert!(store.state().grants_by_expiry.is_empty());
    }
}
