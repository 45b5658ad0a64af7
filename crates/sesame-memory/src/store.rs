use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sesame_domain::{
    Challenge, ChallengeKey, CheckOutcome, Client, ClientId, CodePolicy, Connection, ConnectionName, Identifier,
    MessageId, NewChallenge, OutboxMessage, Proof, SecretHash, User, UserId,
};
use sesame_ports::{
    AuditEvent, AuditLog, AuthorizationCode, Backlog, ChallengeStore, ClaimedMessage, ClientStore, ConnectionStore,
    Cutoffs, DeliveryState, GrantStore, KeyState, KeyStore, OpaqueToken, Outbox, RefreshOutcome, RefreshToken,
    Retention, Settled, Settlement, SigningKeyRecord, StoreError, Swept, UserStore,
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
    challenges_sweep_at: usize,
    outbox: HashMap<MessageId, OutboxRow>,
    /// The pending messages, oldest first: claims look only here, never at finished rows.
    pending: std::collections::BTreeSet<(OffsetDateTime, MessageId)>,
    outbox_sweep_at: usize,
    users: HashMap<(ConnectionName, Identifier), User>,
    user_ids: HashMap<UserId, (ConnectionName, Identifier)>,
    codes: HashMap<SecretHash, AuthorizationCode>,
    opaque: HashMap<SecretHash, OpaqueToken>,
    refresh: HashMap<SecretHash, RefreshRow>,
    revoked_families: std::collections::HashSet<String>,
    keys: Vec<SigningKeyRecord>,
    audit: Vec<AuditEvent>,
}

/// Every store port in process memory, behind one lock: each method is one atomic step.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// Dead rows go when a map has doubled since the last sweep (amortized O(1) per insert).
const SWEEP_FLOOR: usize = 100_000;

/// How long a finished outbox row or a dead challenge is kept for `state` and audits.
const KEEP_FINISHED: time::Duration = time::Duration::hours(1);

impl State {
    /// Keeps the newest 90 000–100 000 events.
    fn record(&mut self, event: AuditEvent) {
        if self.audit.len() >= 100_000 {
            self.audit.drain(..10_000);
        }
        self.audit.push(event);
    }

    fn finish(&mut self, id: &MessageId, state: DeliveryState) {
        if let Some(row) = self.outbox.get_mut(id) {
            self.pending.remove(&(row.message.created_at, id.clone()));
            row.state = state;
            row.lease_until = None;
            // The sealed body is needed no more.
            row.message.sealed.0 = Vec::new();
        }
    }

    fn sweep(&mut self, now: OffsetDateTime) {
        if self.outbox.len() > self.outbox_sweep_at.max(SWEEP_FLOOR) {
            self.outbox.retain(|_, r| r.state == DeliveryState::Pending || r.due_at + KEEP_FINISHED > now);
            self.outbox_sweep_at = self.outbox.len() * 2;
        }
        if self.challenges.len() > self.challenges_sweep_at.max(SWEEP_FLOOR) {
            self.challenges.retain(|_, c| c.challenge.expires_at + KEEP_FINISHED > now);
            self.challenges_sweep_at = self.challenges.len() * 2;
        }
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

#[async_trait]
impl ChallengeStore for MemoryStore {
    async fn start(
        &self,
        challenge: NewChallenge,
        message: OutboxMessage,
        event: AuditEvent,
        claimed_until: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        state.record(event);
        let due_at = message.created_at;
        state.sweep(due_at);
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
        state.challenges.insert(challenge.key.clone(), Challenge { challenge, attempts: 0, consumed_at: None });
        Ok(())
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
            state.user_ids.insert(new_id.clone(), key.clone());
            state.users.insert(
                key.clone(),
                User {
                    id: new_id,
                    connection: connection.clone(),
                    identifier: identifier.clone(),
                    email_verified: false,
                    phone_verified: false,
                    created_at: now,
                    updated_at: now,
                    last_login: None,
                    logins_count: 0,
                },
            );
        }
        let user = state.users.get_mut(&key).ok_or_else(|| anyhow::anyhow!("user vanished under the lock"))?;
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
        self.state().codes.insert(code.code_hash, code);
        Ok(())
    }
    async fn take_code(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<AuthorizationCode>, StoreError> {
        Ok(self.state().codes.remove(hash).filter(|c| c.expires_at > now))
    }
    async fn save_opaque(&self, token: OpaqueToken) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.opaque.len() > 100_000 {
            let now = token.expires_at - time::Duration::days(400);
            state.opaque.retain(|_, t| t.expires_at > now);
        }
        state.opaque.insert(token.token_hash, token);
        Ok(())
    }
    async fn find_opaque(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<OpaqueToken>, StoreError> {
        Ok(self.state().opaque.get(hash).filter(|t| t.expires_at > now).cloned())
    }
    async fn save_refresh(&self, token: RefreshToken) -> Result<(), StoreError> {
        self.state().refresh.insert(token.token_hash, RefreshRow { token, spent: false });
        Ok(())
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
}

/// Takes at most `batch` keys of `map` whose value `dead` says may go.
fn take_dead<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    batch: usize,
    dead: impl Fn(&V) -> bool,
) -> u64 {
    let keys: Vec<K> = map.iter().filter(|(_, v)| dead(v)).map(|(k, _)| k.clone()).take(batch).collect();
    for k in &keys {
        map.remove(k);
    }
    keys.len() as u64
}

#[async_trait]
impl Retention for MemoryStore {
    async fn sweep(&self, cutoffs: &Cutoffs, batch: usize) -> Result<Option<Swept>, StoreError> {
        let mut state = self.state();
        let challenges = take_dead(&mut state.challenges, batch, |c| c.challenge.expires_at < cutoffs.challenges);
        let mut grants = take_dead(&mut state.codes, batch, |c| c.expires_at < cutoffs.grants);
        grants += take_dead(&mut state.opaque, batch, |t| t.expires_at < cutoffs.grants);
        grants += take_dead(&mut state.refresh, batch, |r| r.token.expires_at < cutoffs.grants);
        // A message ends by its expiry at the latest: one that expired before the cutoff ended before it.
        let outbox = take_dead(&mut state.outbox, batch, |r| {
            r.state != DeliveryState::Pending && r.message.expires_at < cutoffs.outbox
        });
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
        let batch = batch as u64;
        let more = challenges >= batch || grants >= batch || outbox >= batch || audit >= batch;
        Ok(Some(Swept { challenges, grants, outbox, audit, more }))
    }
}
