//! Contract tests every adapter runs against itself. Each function takes one adapter instance
//! and works with names no other test uses, so suites may share a store and run in parallel.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "contract tests fail loudly on any error")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sesame_domain::{
    AppType, AuthMethod, AuthParams, ChallengeKey, Channel, CheckOutcome, Client, ClientId, CodePolicy, Connection,
    ConnectionName, Email, Identifier, MessageId, NewChallenge, OutboxMessage, Proof, SealedMessage, SecretHash, Send,
    Strategy, User, UserFilter, UserId, UserPatch,
};
use time::OffsetDateTime;

use crate::{
    AuditEvent, AuditKind, AuditLog, AuthorizationCode, ChallengeStore, ClientStore, ConnectionStore, DeliveryState,
    GrantStore, KeyState, KeyStore, LimitRule, OpaqueToken, Outbox, RateLimiter, RefreshOutcome, RefreshToken,
    ReplayGuard, Retention, SigningKeyRecord, UserStore,
};

/// A fixed instant the tests count from (stores take `now` as an argument).
pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

/// A name no other test in this process (or another one) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos:x}x{n}", std::process::id())
}

pub fn hash(byte: u8) -> SecretHash {
    SecretHash([byte; 32])
}

fn unique_hash() -> SecretHash {
    let mut bytes = [0u8; 32];
    let name = unique("h");
    for (i, b) in name.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    bytes[31] = bytes[31].wrapping_add(1);
    SecretHash(bytes)
}

pub fn email_key(client: &str) -> ChallengeKey {
    ChallengeKey {
        client_id: ClientId::new(client),
        connection: ConnectionName::new("email"),
        identifier: Identifier::Email(Email::parse(&format!("{}@example.com", unique("u"))).unwrap()),
    }
}

pub fn challenge(key: &ChallengeKey, code: SecretHash, link: Option<SecretHash>, now: OffsetDateTime) -> NewChallenge {
    NewChallenge {
        id: unique("c"),
        key: key.clone(),
        code_hash: code,
        link_hash: link,
        send: Send::Code,
        auth_params: AuthParams::default(),
        language: Some("fr-FR".into()),
        created_at: now,
        expires_at: now + secs(180),
    }
}

pub fn message(key: &ChallengeKey, now: OffsetDateTime) -> OutboxMessage {
    OutboxMessage {
        id: MessageId(unique("m")),
        channel: Channel::Email,
        recipient: key.identifier.as_str().to_owned(),
        sealed: SealedMessage(vec![1, 2, 3]),
        created_at: now,
        expires_at: now + secs(180),
    }
}

/// The audit event a start records (`code_link_sent`).
pub fn issued(now: OffsetDateTime) -> AuditEvent {
    let mut event = AuditEvent::new(AuditKind::CodeLinkSent, now);
    event.connection = Some("email".into());
    event.detail = Some("code".into());
    event
}

pub fn client(id: &str, origins: &[&str]) -> Client {
    Client {
        id: ClientId::new(id),
        name: format!("app {id}"),
        app_type: AppType::Native,
        auth_method: AuthMethod::None,
        secret_hash: None,
        connections: vec![ConnectionName::new("email"), ConnectionName::new("sms")],
        callbacks: vec!["http://localhost:3000/callback".into()],
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        grant_types: vec![sesame_domain::GrantType::PasswordlessOtp],
        public_keys: vec![],
        api_scopes: Default::default(),
        trust_forwarded_for: false,
        allowed_logout_urls: vec![],
        require_pkce: true,
    }
}

/// ChallengeStore + Outbox + AuditLog together: `start` writes to all three in one step.
pub async fn challenge_store<S>(store: Arc<S>)
where
    S: ChallengeStore + Outbox + AuditLog + 'static,
{
    let now = t0();
    let right = hash(1);
    let wrong = hash(2);

    // A right code is accepted once, then the challenge is gone.
    let key = email_key(&unique("client"));
    let first = challenge(&key, right, None, now);
    let msg = message(&key, now);
    let mut event = issued(now);
    event.client_id = Some(key.client_id.as_str().to_owned());
    store.start(first.clone(), msg.clone(), event.clone(), None).await.unwrap();
    assert_eq!(store.state(&msg.id).await.unwrap(), Some(DeliveryState::Pending), "start enqueues its message");
    assert_eq!(
        store.recent(100_000).await.unwrap().iter().filter(|e| **e == event).count(),
        1,
        "start records its audit event"
    );
    match store.check(&key, Proof::Code(right), true, now + secs(1)).await.unwrap() {
        CheckOutcome::Accepted(c) => {
            assert_eq!(c.challenge.id, first.id);
            assert_eq!(c.challenge.language.as_deref(), Some("fr-FR"));
            assert_eq!(c.challenge.key, key);
        }
        other => panic!("right code: {other:?}"),
    }
    assert_eq!(store.check(&key, Proof::Code(right), true, now + secs(2)).await.unwrap(), CheckOutcome::NotFound);

    // Wrong tries are counted; the third burns the code, and the right code no longer works.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    assert_eq!(
        store.check(&key, Proof::Code(wrong), true, now).await.unwrap(),
        CheckOutcome::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        store.check(&key, Proof::Code(wrong), true, now).await.unwrap(),
        CheckOutcome::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        store.check(&key, Proof::Code(wrong), true, now).await.unwrap(),
        CheckOutcome::Wrong { attempts_left: 0 },
        "the try that burns the code still counts"
    );
    assert_eq!(store.check(&key, Proof::Code(right), true, now).await.unwrap(), CheckOutcome::Exhausted);
    assert_eq!(
        store.check(&key, Proof::Code(wrong), true, now).await.unwrap(),
        CheckOutcome::NotFound,
        "only the holder of the burnt code learns that it is burnt"
    );
    assert_eq!(CodePolicy::MAX_ATTEMPTS, 3);

    // Two wrong tries, then the right code: accepted.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(store.check(&key, Proof::Code(wrong), true, now).await.unwrap(), CheckOutcome::Wrong { .. }));
    }
    assert!(matches!(store.check(&key, Proof::Code(right), true, now).await.unwrap(), CheckOutcome::Accepted(_)));

    // Expiry: at expires_at the code is dead.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    assert_eq!(store.check(&key, Proof::Code(right), true, now + secs(180)).await.unwrap(), CheckOutcome::Expired);
    assert_eq!(
        store.check(&key, Proof::Code(wrong), true, now + secs(180)).await.unwrap(),
        CheckOutcome::NotFound,
        "a stranger's guess cannot tell an expired login from none"
    );

    // A new start replaces the earlier code.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    let newer = hash(3);
    store.start(challenge(&key, newer, None, now + secs(5)), message(&key, now), issued(now), None).await.unwrap();
    assert_eq!(
        store.check(&key, Proof::Code(right), true, now + secs(6)).await.unwrap(),
        CheckOutcome::Wrong { attempts_left: 2 }
    );
    assert!(matches!(
        store.check(&key, Proof::Code(newer), true, now + secs(6)).await.unwrap(),
        CheckOutcome::Accepted(_)
    ));

    // A new start ends the earlier message with its code: never sent (its code is dead), its
    // settlement (a worker already sending it) changes nothing; the earlier start's audit event
    // is kept, and the new one recorded.
    let key = email_key(&unique("client"));
    let (first_msg, second_msg) = (message(&key, now), message(&key, now + secs(5)));
    let (mut first_event, mut second_event) = (issued(now), issued(now + secs(5)));
    first_event.detail = Some(unique("first-start"));
    second_event.detail = Some(unique("second-start"));
    store.start(challenge(&key, right, None, now), first_msg.clone(), first_event.clone(), None).await.unwrap();
    store
        .start(challenge(&key, hash(3), None, now + secs(5)), second_msg.clone(), second_event.clone(), None)
        .await
        .unwrap();
    assert_eq!(store.state(&first_msg.id).await.unwrap(), None, "the earlier message ends");
    assert_eq!(store.state(&second_msg.id).await.unwrap(), Some(DeliveryState::Pending));
    store.mark_sent(&first_msg.id, now + secs(6)).await.unwrap();
    assert_eq!(store.state(&second_msg.id).await.unwrap(), Some(DeliveryState::Pending), "untouched");
    let recent = store.recent(100_000).await.unwrap();
    for e in [&first_event, &second_event] {
        assert_eq!(recent.iter().filter(|r| *r == e).count(), 1, "each start's event, once: {e:?}");
    }
    // Ten starts of one key at once: one challenge, one pending message, ten events.
    let key = email_key(&unique("client"));
    let tag = unique("racing-start");
    let racers: Vec<_> = (0..10)
        .map(|i| {
            let (store, key, tag) = (Arc::clone(&store), key.clone(), tag.clone());
            tokio::spawn(async move {
                let m = message(&key, now);
                let mut e = issued(now + secs(i));
                e.detail = Some(tag);
                store.start(challenge(&key, hash(4), None, now), m.clone(), e, None).await.unwrap();
                m.id
            })
        })
        .collect();
    let mut pending = 0;
    for id in futures::future::join_all(racers).await {
        pending += usize::from(store.state(&id.unwrap()).await.unwrap() == Some(DeliveryState::Pending));
    }
    assert_eq!(pending, 1, "one live message for the key");
    let events = store.recent(100_000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.detail.as_deref() == Some(tag.as_str())).count(), 10, "no event lost");

    // A start's event naming a user is in that user's log.
    let key = email_key(&unique("client"));
    let mut named = issued(now);
    let user = unique("email|u");
    named.user_id = Some(user.clone());
    store.start(challenge(&key, right, None, now), message(&key, now), named.clone(), None).await.unwrap();
    assert_eq!(store.for_user(&user, 0, 10).await.unwrap(), (vec![named.clone()], 1));
    assert_eq!(store.recent(100_000).await.unwrap().iter().filter(|e| **e == named).count(), 1);

    // A new start also resets the per-code try count (a fresh code gets three tries).
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    for _ in 0..3 {
        store.check(&key, Proof::Code(wrong), true, now).await.unwrap();
    }
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    assert!(matches!(store.check(&key, Proof::Code(right), true, now).await.unwrap(), CheckOutcome::Accepted(_)));

    // Links: the link hash works as a proof; a code hash does not pass as a link.
    let key = email_key(&unique("client"));
    let link = hash(9);
    store.start(challenge(&key, right, Some(link), now), message(&key, now), issued(now), None).await.unwrap();
    assert!(matches!(store.check(&key, Proof::Link(right), true, now).await.unwrap(), CheckOutcome::Wrong { .. }));
    assert!(matches!(store.check(&key, Proof::Link(link), true, now).await.unwrap(), CheckOutcome::Accepted(_)));

    // Peeking (consume = false) keeps the challenge live.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    assert!(matches!(store.check(&key, Proof::Code(right), false, now).await.unwrap(), CheckOutcome::Accepted(_)));
    assert!(matches!(store.check(&key, Proof::Code(right), true, now).await.unwrap(), CheckOutcome::Accepted(_)));

    // Keys are isolated: the same identifier under another client has no challenge.
    let key = email_key(&unique("client"));
    store.start(challenge(&key, right, None, now), message(&key, now), issued(now), None).await.unwrap();
    let other = ChallengeKey { client_id: ClientId::new(unique("other")), ..key.clone() };
    assert_eq!(store.check(&other, Proof::Code(right), true, now).await.unwrap(), CheckOutcome::NotFound);

    // 20 concurrent exchanges of one valid code: exactly one success.
    concurrent_single_use(&store, 20).await;
}

/// `n` simultaneous consumes of one valid code: exactly one is accepted.
pub async fn concurrent_single_use<S>(store: &Arc<S>, n: usize)
where
    S: ChallengeStore + Outbox + 'static,
{
    let now = t0();
    let key = email_key(&unique("client"));
    store.start(challenge(&key, hash(1), None, now), message(&key, now), issued(now), None).await.unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let store = Arc::clone(store);
            let key = key.clone();
            tokio::spawn(async move { store.check(&key, Proof::Code(hash(1)), true, now).await.unwrap() })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    let accepted = outcomes.iter().filter(|o| matches!(o.as_ref().unwrap(), CheckOutcome::Accepted(_))).count();
    assert_eq!(accepted, 1, "exactly one of {n} concurrent exchanges wins");
}

/// The outbox: leases, retries, terminal states, no double claims.
pub async fn outbox<S>(store: Arc<S>)
where
    S: ChallengeStore + Outbox + 'static,
{
    // Far in the future so other suites' messages (due at t0) do not matter for due times.
    let now = t0() + secs(10_000_000);
    let key = email_key(&unique("client"));
    let msg = message(&key, now);
    store.start(challenge(&key, hash(1), None, now), msg.clone(), issued(now), None).await.unwrap();
    let mine = |claimed: &[crate::ClaimedMessage]| claimed.iter().filter(|c| c.message.id == msg.id).count();

    let backlog = store.backlog().await.unwrap();
    assert!(backlog.pending >= 1, "a started message is pending: {backlog:?}");
    assert!(backlog.oldest.is_some_and(|t| t <= now), "the oldest is no younger than ours: {backlog:?}");

    let claimed = store.claim_due(now, 1000, Duration::from_secs(30)).await.unwrap();
    assert_eq!(mine(&claimed), 1);
    let got = claimed.iter().find(|c| c.message.id == msg.id).unwrap();
    assert_eq!(got.attempt, 1);
    assert_eq!(got.message, msg, "the message comes back as it went in");
    assert_eq!(mine(&store.claim_due(now + secs(1), 1000, Duration::from_secs(30)).await.unwrap()), 0, "leased");
    let reclaimed = store.claim_due(now + secs(31), 1000, Duration::from_secs(30)).await.unwrap();
    assert_eq!(mine(&reclaimed), 1, "a lapsed lease makes the message due again");
    assert_eq!(reclaimed.iter().find(|c| c.message.id == msg.id).unwrap().attempt, 2);

    assert!(store.claim(&msg.id, now + secs(32), Duration::from_secs(30)).await.unwrap().is_none(), "leased");
    store.retry_at(&msg.id, now + secs(100), "throttled").await.unwrap();
    assert!(store.claim(&msg.id, now + secs(99), Duration::from_secs(30)).await.unwrap().is_none(), "not due");
    assert_eq!(mine(&store.claim_due(now + secs(99), 1000, Duration::from_secs(30)).await.unwrap()), 0);
    assert_eq!(mine(&store.claim_due(now + secs(100), 1000, Duration::from_secs(30)).await.unwrap()), 1);
    store.mark_sent(&msg.id, now + secs(101)).await.unwrap();
    assert_eq!(store.state(&msg.id).await.unwrap(), None, "a sent message leaves the outbox");
    assert_eq!(
        mine(&store.claim_due(now + secs(10_000), 1000, Duration::from_secs(1)).await.unwrap()),
        0,
        "sent is final"
    );

    let key = email_key(&unique("client"));
    let own = message(&key, now);
    store.start(challenge(&key, hash(1), None, now), own.clone(), issued(now), None).await.unwrap();
    let claimed = store.claim(&own.id, now, Duration::from_secs(30)).await.unwrap().expect("its own message");
    assert_eq!((claimed.message.id, claimed.attempt), (own.id.clone(), 1));
    assert!(store.claim(&own.id, now, Duration::from_secs(30)).await.unwrap().is_none(), "claimed once");
    assert_eq!(mine_count(&store.claim_due(now, 1000, Duration::from_secs(30)).await.unwrap(), &own.id), 0);
    store.mark_sent(&own.id, now).await.unwrap();

    let key = email_key(&unique("client"));
    let failed = message(&key, now);
    store.start(challenge(&key, hash(1), None, now), failed.clone(), issued(now), None).await.unwrap();
    store.finish(&failed.id, DeliveryState::Failed("invalid number".into()), now).await.unwrap();
    assert_eq!(store.state(&failed.id).await.unwrap(), Some(DeliveryState::Failed("invalid number".into())));
    assert_eq!(store.state(&MessageId(unique("none"))).await.unwrap(), None);

    // A message enqueued already claimed: attempt 1, leased until the time given.
    let key = email_key(&unique("client"));
    let pre = message(&key, now);
    store.start(challenge(&key, hash(1), None, now), pre.clone(), issued(now), Some(now + secs(30))).await.unwrap();
    assert_eq!(store.state(&pre.id).await.unwrap(), Some(DeliveryState::Pending));
    assert_eq!(mine_count(&store.claim_due(now + secs(29), 1000, Duration::from_secs(30)).await.unwrap(), &pre.id), 0);
    assert!(store.claim(&pre.id, now + secs(29), Duration::from_secs(30)).await.unwrap().is_none(), "claimed");
    let lapsed = store.claim_due(now + secs(30), 1000, Duration::from_secs(30)).await.unwrap();
    assert_eq!(lapsed.iter().find(|c| c.message.id == pre.id).map(|c| c.attempt), Some(2), "its lease lapsed");
    store.mark_sent(&pre.id, now + secs(31)).await.unwrap();

    // One settle for a batch: each message ends as it is told, and a finished message stays
    // finished; a retried one is released from its lease and due again at its time.
    let batch: Vec<OutboxMessage> = (0..4)
        .map(|_| {
            let key = email_key(&unique("client"));
            message(&key, now)
        })
        .collect();
    for m in &batch {
        let key = email_key(&unique("client"));
        store.start(challenge(&key, hash(1), None, now), m.clone(), issued(now), None).await.unwrap();
        assert!(store.claim(&m.id, now, Duration::from_secs(600)).await.unwrap().is_some());
    }
    let outcomes = [
        crate::Settlement::Sent,
        crate::Settlement::Failed("bounced".into()),
        crate::Settlement::Dropped,
        crate::Settlement::Retry { at: now + secs(50), error: "throttled".into() },
    ];
    let settled: Vec<crate::Settled> =
        batch.iter().zip(outcomes).map(|(m, outcome)| crate::Settled { id: m.id.clone(), outcome }).collect();
    store.settle(&settled, now + secs(1)).await.unwrap();
    let states = [
        None,
        Some(DeliveryState::Failed("bounced".into())),
        Some(DeliveryState::Dropped),
        Some(DeliveryState::Pending),
    ];
    for (m, want) in batch.iter().zip(states) {
        assert_eq!(store.state(&m.id).await.unwrap(), want);
    }
    let retried = &batch[3].id;
    assert!(store.claim(retried, now + secs(49), Duration::from_secs(30)).await.unwrap().is_none(), "not due yet");
    assert!(store.claim(retried, now + secs(50), Duration::from_secs(30)).await.unwrap().is_some(), "lease released");
    let late = [
        crate::Settled { id: batch[0].id.clone(), outcome: crate::Settlement::Failed("late".into()) },
        crate::Settled { id: batch[1].id.clone(), outcome: crate::Settlement::Sent },
    ];
    store.settle(&late, now + secs(2)).await.unwrap();
    assert_eq!(store.state(&batch[0].id).await.unwrap(), None, "sent is final");
    assert_eq!(
        store.state(&batch[1].id).await.unwrap(),
        Some(DeliveryState::Failed("bounced".into())),
        "failed is final"
    );
    store.settle(&[], now).await.unwrap();

    // Concurrent claimers never get the same message.
    let mut ids = Vec::new();
    for _ in 0..30 {
        let key = email_key(&unique("client"));
        let m = message(&key, now);
        ids.push(m.id.clone());
        store.start(challenge(&key, hash(1), None, now), m, issued(now), None).await.unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.extend(store.claim_due(now + secs(200), 3, Duration::from_secs(600)).await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut all: Vec<MessageId> = Vec::new();
    for c in futures::future::join_all(claimers).await {
        all.extend(c.unwrap().into_iter().map(|c| c.message.id).filter(|id| ids.contains(id)));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "no message claimed twice");
    assert_eq!(all.len(), ids.len(), "every message claimed");
}

fn mine_count(claimed: &[crate::ClaimedMessage], id: &MessageId) -> usize {
    claimed.iter().filter(|c| &c.message.id == id).count()
}

/// Users: one per identifier under concurrency; logins counted.
pub async fn user_store<S: UserStore + 'static>(store: Arc<S>) {
    let now = t0();
    let conn = ConnectionName::new("email");
    let id = Identifier::Email(Email::parse(&format!("{}@example.com", unique("user"))).unwrap());
    assert!(store.find(&conn, &id).await.unwrap().is_none());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, conn, id) = (Arc::clone(&store), conn.clone(), id.clone());
            tokio::spawn(async move {
                store.record_login(&conn, &id, UserId(format!("email|{i:024x}")), now).await.unwrap()
            })
        })
        .collect();
    let users: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    let first = &users[0];
    assert!(users.iter().all(|u| u.id == first.id), "one user for one identifier");
    let found = store.find(&conn, &id).await.unwrap().unwrap();
    assert_eq!(found.logins_count, 20);
    assert!(found.email_verified);
    assert!(!found.phone_verified);
    assert_eq!(store.find_by_id(&found.id).await.unwrap().unwrap().identifier, id);
    let other_conn = ConnectionName::new(unique("conn"));
    assert!(store.find(&other_conn, &id).await.unwrap().is_none(), "users are per connection");
}

/// A fresh `email|<24 hex>` id.
fn user_id() -> UserId {
    UserId(format!("email|{}", unique_hash().0.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>()))
}

fn new_user(now: OffsetDateTime) -> User {
    let identifier = Identifier::Email(Email::parse(&format!("{}@example.com", unique("admin"))).unwrap());
    let id = user_id();
    User::new(id, ConnectionName::new("email"), identifier, now)
}

fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

/// What the Management API needs of the user store: create, list and page, atomic patches,
/// blocking, and a deletion that leaves nothing about the user behind.
pub async fn user_admin<S>(store: Arc<S>)
where
    S: UserStore + GrantStore + ChallengeStore + Outbox + AuditLog + 'static,
{
    let now = t0();
    // Create, and a second create of the same identifier or id is a conflict.
    let first = new_user(now);
    store.create(&first).await.unwrap();
    let mut twin = new_user(now);
    twin.identifier = first.identifier.clone();
    assert!(matches!(store.create(&twin).await, Err(crate::StoreError::Conflict(_))), "same identifier");
    let mut same_id = new_user(now);
    same_id.id = first.id.clone();
    assert!(matches!(store.create(&same_id).await, Err(crate::StoreError::Conflict(_))), "same id");
    assert_eq!(store.find_by_id(&first.id).await.unwrap().unwrap(), first);
    let by_identifier = store.list(&UserFilter::Identifier(first.identifier.clone()), 0, 10).await.unwrap();
    assert_eq!((by_identifier.users.as_slice(), by_identifier.total), (std::slice::from_ref(&first), 1));
    let by_id = store.list(&UserFilter::Id(first.id.clone()), 0, 10).await.unwrap();
    assert_eq!(by_id.users, vec![first.clone()]);

    // Pages: oldest first, each user once.
    let mut made = Vec::new();
    for i in 0..5 {
        let u = new_user(now + secs(10 + i));
        store.create(&u).await.unwrap();
        made.push(u.id);
    }
    let all = store.list(&UserFilter::All, 0, 1000).await.unwrap();
    let mut seen = Vec::new();
    let mut page = 0;
    loop {
        let p = store.list(&UserFilter::All, page, 2).await.unwrap();
        assert_eq!(p.total, all.total);
        if p.users.is_empty() {
            break;
        }
        assert!(p.users.len() <= 2);
        seen.extend(p.users.into_iter().map(|u| u.id));
        page += 1;
    }
    let mine: Vec<_> = seen.iter().filter(|id| made.contains(id)).cloned().collect();
    assert_eq!(mine, made, "each user once, oldest first");
    assert_eq!(seen.len() as u64, all.total);

    // Concurrent patches of one user's metadata lose no key; null removes one; {} clears.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, id) = (Arc::clone(&store), first.id.clone());
            tokio::spawn(async move {
                let meta = object(serde_json::json!({ format!("k{i}"): i, "nested": {"by": i} }));
                let patch = UserPatch {
                    user_metadata: Some(sesame_domain::MetadataPatch::from_object(&meta)),
                    app_metadata: Some(sesame_domain::MetadataPatch::from_object(&meta)),
                    ..UserPatch::default()
                };
                store.update(&id, &patch, now + secs(100)).await.unwrap().unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let patched = store.find_by_id(&first.id).await.unwrap().unwrap();
    for i in 0..20 {
        assert_eq!(patched.user_metadata.get(&format!("k{i}")), Some(&serde_json::json!(i)), "user_metadata k{i}");
        assert_eq!(patched.app_metadata.get(&format!("k{i}")), Some(&serde_json::json!(i)), "app_metadata k{i}");
    }
    assert_eq!(patched.user_metadata.len(), 21);
    let remove = UserPatch {
        user_metadata: Some(sesame_domain::MetadataPatch::from_object(&object(serde_json::json!({"k0": null})))),
        app_metadata: Some(sesame_domain::MetadataPatch::from_object(&serde_json::Map::new())),
        name: Some(Some("Jane".into())),
        picture: Some(Some("https://example.com/p.png".into())),
        ..UserPatch::default()
    };
    let patched = store.update(&first.id, &remove, now + secs(101)).await.unwrap().unwrap();
    assert!(!patched.user_metadata.contains_key("k0") && patched.user_metadata.len() == 20);
    assert!(patched.app_metadata.is_empty(), "an empty object clears");
    assert_eq!(patched.profile.name.as_deref(), Some("Jane"));
    assert_eq!(patched.updated_at, now + secs(101));
    // Metadata may not grow past its limit, one patch at a time: the patch that would cross it
    // changes nothing.
    let chunk = "x".repeat(sesame_domain::METADATA_MAX_BYTES / 3);
    for i in 0..2 {
        let p = UserPatch {
            user_metadata: Some(sesame_domain::MetadataPatch::from_object(&object(
                serde_json::json!({ format!("big{i}"): chunk }),
            ))),
            ..UserPatch::default()
        };
        store.update(&first.id, &p, now).await.unwrap().unwrap();
    }
    let over = UserPatch {
        user_metadata: Some(sesame_domain::MetadataPatch::from_object(&object(serde_json::json!({ "big2": chunk })))),
        name: Some(Some("Not applied".into())),
        ..UserPatch::default()
    };
    assert!(matches!(store.update(&first.id, &over, now).await, Err(crate::StoreError::TooLarge(_))));
    let kept = store.find_by_id(&first.id).await.unwrap().unwrap();
    assert!(kept.user_metadata.contains_key("big1") && !kept.user_metadata.contains_key("big2"));
    assert_eq!(kept.profile.name.as_deref(), Some("Jane"), "nothing of a refused patch is applied");
    let shrink = UserPatch {
        user_metadata: Some(sesame_domain::MetadataPatch::from_object(&object(
            serde_json::json!({"big0": null, "big1": null}),
        ))),
        ..UserPatch::default()
    };
    store.update(&first.id, &shrink, now).await.unwrap().unwrap();
    let back = UserPatch { name: Some(None), ..UserPatch::default() };
    assert_eq!(store.update(&first.id, &back, now + secs(102)).await.unwrap().unwrap().profile.name, None);
    let nobody = UserId("email|000000000000000000000000".into());
    assert!(store.update(&nobody, &back, now).await.unwrap().is_none());

    // A new identifier that another user has is a conflict; a free one moves the user.
    let other = store.find_by_id(&made[0]).await.unwrap().unwrap();
    let steal = UserPatch { identifier: Some(other.identifier.clone()), ..UserPatch::default() };
    assert!(matches!(store.update(&first.id, &steal, now).await, Err(crate::StoreError::Conflict(_))));
    let moved_to = new_user(now).identifier;
    let mv = UserPatch { identifier: Some(moved_to.clone()), ..UserPatch::default() };
    store.update(&other.id, &mv, now).await.unwrap().unwrap();
    assert_eq!(store.find(&other.connection, &moved_to).await.unwrap().unwrap().id, other.id);
    assert!(store.find(&other.connection, &other.identifier).await.unwrap().is_none());

    // A blocked user's logins are not counted (the flow refuses them).
    let block = UserPatch { blocked: Some(true), ..UserPatch::default() };
    assert!(store.update(&first.id, &block, now).await.unwrap().unwrap().blocked);
    let refused =
        store.record_login(&first.connection, &first.identifier, UserId("email|x".into()), now).await.unwrap();
    assert!(refused.blocked && refused.logins_count == 0 && refused.id == first.id);
    // A start for a blocked user writes nothing: no challenge, no message, no event.
    let blocked_key = ChallengeKey {
        client_id: ClientId::new(unique("client")),
        connection: first.connection.clone(),
        identifier: first.identifier.clone(),
    };
    let blocked_msg = message(&blocked_key, now);
    let mut blocked_event = issued(now);
    let blocked_tag = unique("blocked-start");
    blocked_event.detail = Some(blocked_tag.clone());
    let outcome = store
        .start(challenge(&blocked_key, hash(9), None, now), blocked_msg.clone(), blocked_event, None)
        .await
        .unwrap();
    assert_eq!(outcome, crate::StartOutcome::Blocked);
    assert_eq!(store.check(&blocked_key, Proof::Code(hash(9)), false, now).await.unwrap(), CheckOutcome::NotFound);
    assert_eq!(store.state(&blocked_msg.id).await.unwrap(), None, "no message for a blocked user");
    assert!(!store.recent(1000).await.unwrap().iter().any(|e| e.detail.as_deref() == Some(&blocked_tag)));
    let unblock = UserPatch { blocked: Some(false), ..UserPatch::default() };
    store.update(&first.id, &unblock, now).await.unwrap();
    let login = store.record_login(&first.connection, &first.identifier, UserId("email|x".into()), now).await.unwrap();
    assert_eq!(login.logins_count, 1);
    let outcome =
        store.start(challenge(&blocked_key, hash(9), None, now), blocked_msg.clone(), issued(now), None).await.unwrap();
    assert_eq!(outcome, crate::StartOutcome::Stored, "unblocked, a start is stored");

    // Deletion: the user and everything held about them.
    let client = ClientId::new(unique("client"));
    let code = AuthorizationCode {
        code_hash: unique_hash(),
        client_id: client.clone(),
        user_id: first.id.clone(),
        redirect_uri: "http://localhost:3000/callback".into(),
        scope: "openid".into(),
        audience: None,
        nonce: None,
        code_challenge: None,
        expires_at: now + secs(60),
    };
    store.save_code(code.clone()).await.unwrap();
    let opaque = OpaqueToken {
        token_hash: unique_hash(),
        client_id: client.clone(),
        user_id: first.id.clone(),
        scope: "openid".into(),
        expires_at: now + secs(3600),
    };
    store.save_opaque(opaque.clone()).await.unwrap();
    let refresh = RefreshToken {
        token_hash: unique_hash(),
        family_id: unique("fam"),
        client_id: client.clone(),
        user_id: first.id.clone(),
        scope: "openid offline_access".into(),
        audience: None,
        expires_at: now + secs(3600),
    };
    store.save_refresh(refresh.clone()).await.unwrap();
    let key = ChallengeKey {
        client_id: client.clone(),
        connection: first.connection.clone(),
        identifier: first.identifier.clone(),
    };
    let code_hash = unique_hash();
    let msg = message(&key, now);
    let mut start_event = issued(now);
    start_event.detail = Some(unique("deleted-users-start"));
    store.start(challenge(&key, code_hash, None, now), msg.clone(), start_event.clone(), None).await.unwrap();
    let mut event = AuditEvent::new(AuditKind::LoginSucceeded, now);
    event.user_id = Some(first.id.0.clone());
    let event_copy = event.clone();
    store.record(event).await.unwrap();
    let mut other_event = AuditEvent::new(AuditKind::LoginSucceeded, now);
    other_event.user_id = Some(other.id.0.clone());
    store.record(other_event).await.unwrap();
    assert_eq!(store.for_user(first.id.as_str(), 0, 10).await.unwrap(), (vec![event_copy.clone()], 1));

    assert!(store.delete(&first.id).await.unwrap());
    assert!(store.find_by_id(&first.id).await.unwrap().is_none());
    assert!(store.find(&first.connection, &first.identifier).await.unwrap().is_none());
    assert!(store.list(&UserFilter::Identifier(first.identifier.clone()), 0, 10).await.unwrap().users.is_empty());
    assert!(store.take_code(&code.code_hash, now).await.unwrap().is_none(), "its codes");
    assert!(store.find_opaque(&opaque.token_hash, now).await.unwrap().is_none(), "its access tokens");
    let rotated = store.rotate_refresh(&client, &refresh.token_hash, unique_hash(), now + secs(60), now).await.unwrap();
    assert_eq!(rotated, RefreshOutcome::Invalid, "its refresh tokens");
    assert_eq!(
        store.check(&key, Proof::Code(code_hash), true, now).await.unwrap(),
        CheckOutcome::NotFound,
        "its challenges"
    );
    assert_eq!(store.state(&msg.id).await.unwrap(), None, "its unsent messages");
    assert!(store.for_user(first.id.as_str(), 0, 10).await.unwrap().0.is_empty(), "its audit events");
    assert_eq!(
        store.recent(1_000_000).await.unwrap().iter().filter(|e| **e == start_event).count(),
        1,
        "a start's event (no user, a masked identifier) stays in the log"
    );
    assert_eq!(store.for_user(other.id.as_str(), 0, 10).await.unwrap().1, 1, "nobody else's");
    assert!(!store.delete(&first.id).await.unwrap(), "deleting twice finds nothing");
    // The identifier signs up again, as someone new.
    let again = user_id();
    let reborn = store.record_login(&first.connection, &first.identifier, again.clone(), now).await.unwrap();
    assert_eq!((reborn.id, reborn.logins_count), (again, 1));
}

/// RFC 7009: a client revokes its own refresh tokens only, and a revoked family is dead.
pub async fn refresh_revocation<S: GrantStore + 'static>(store: Arc<S>) {
    let now = t0();
    let client = ClientId::new(unique("client"));
    let token = RefreshToken {
        token_hash: unique_hash(),
        family_id: unique("fam"),
        client_id: client.clone(),
        user_id: UserId("email|0123456789abcdef01234567".into()),
        scope: "openid offline_access".into(),
        audience: None,
        expires_at: now + secs(3600),
    };
    store.save_refresh(token.clone()).await.unwrap();
    let stranger = ClientId::new(unique("stranger"));
    assert!(!store.revoke_refresh(&stranger, &token.token_hash).await.unwrap(), "another client's token");
    assert!(!store.revoke_refresh(&client, &unique_hash()).await.unwrap(), "an unknown token");
    let next = unique_hash();
    let rotated = store.rotate_refresh(&client, &token.token_hash, next, now + secs(60), now).await.unwrap();
    assert!(matches!(rotated, RefreshOutcome::Rotated(_)), "still good after a stranger's revoke");
    assert!(store.revoke_refresh(&client, &token.token_hash).await.unwrap(), "a spent token still names its family");
    let after = store.rotate_refresh(&client, &next, unique_hash(), now + secs(60), now).await.unwrap();
    assert_eq!(after, RefreshOutcome::Invalid, "the whole family is revoked");
}

/// Clients and connections.
pub async fn client_store<S: ClientStore + ConnectionStore + 'static>(store: Arc<S>) {
    let id = unique("client");
    let origin = format!("https://{}.example", unique("o"));
    let mut c = client(&id, &[&origin]);
    ClientStore::save(&*store, &c).await.unwrap();
    assert_eq!(ClientStore::find(&*store, &c.id).await.unwrap(), Some(c.clone()));
    assert!(store.origin_allowed(&origin).await.unwrap());
    assert!(!store.origin_allowed("https://evil.example").await.unwrap());
    c.name = "renamed".into();
    c.secret_hash = Some(hash(7));
    ClientStore::save(&*store, &c).await.unwrap();
    assert_eq!(ClientStore::find(&*store, &c.id).await.unwrap().unwrap().name, "renamed");
    assert!(ClientStore::list(&*store).await.unwrap().iter().any(|x| x.id == c.id));
    assert!(store.delete(&c.id).await.unwrap());
    assert!(!store.delete(&c.id).await.unwrap());
    assert_eq!(ClientStore::find(&*store, &c.id).await.unwrap(), None);

    let mut conn = Connection::default_for(Strategy::Sms);
    conn.name = ConnectionName::new(unique("sms"));
    ConnectionStore::save(&*store, &conn).await.unwrap();
    assert_eq!(ConnectionStore::find(&*store, &conn.name).await.unwrap(), Some(conn.clone()));
    conn.disable_signup = true;
    conn.policy = CodePolicy::new(8, 300).unwrap();
    conn.limits = sesame_domain::ConnectionLimits {
        send_cooldown_secs: Some(60),
        sms_allowed_countries: Some(vec!["FR".into()]),
        start_per_identifier: Some(sesame_domain::Rate::per_hour(3)),
        ..Default::default()
    };
    ConnectionStore::save(&*store, &conn).await.unwrap();
    assert_eq!(ConnectionStore::find(&*store, &conn.name).await.unwrap(), Some(conn.clone()));
    assert!(ConnectionStore::list(&*store).await.unwrap().contains(&conn));
}

fn rule(key: &str, limit: u32, window_secs: u64, cost: u32) -> LimitRule {
    LimitRule::new(key, limit, Duration::from_secs(window_secs), cost)
}

/// Token buckets: limit, refill, all-or-nothing across keys, look-only checks.
pub async fn rate_limiter<L: RateLimiter + 'static>(limiter: Arc<L>) {
    limiter.ping().await.expect("a working limiter answers a ping");
    let now = t0();
    let ip = unique("ip:");
    for i in 0..5 {
        let d = limiter.check(&[rule(&ip, 5, 3600, 1)], now).await.unwrap();
        assert!(d.allowed, "request {i}");
        assert_eq!((d.limit, d.remaining), (5, 4 - i));
    }
    let refused = limiter.check(&[rule(&ip, 5, 3600, 1)], now).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.refused_by, Some(0), "the refusing rule is named");
    assert_eq!(refused.remaining, 0);
    assert_eq!(refused.retry_after, Duration::from_secs(720), "one token refills every 3600/5 s");
    assert_eq!(refused.reset_at, now + secs(3600));
    let later = limiter.check(&[rule(&ip, 5, 3600, 1)], now + secs(720)).await.unwrap();
    assert!(later.allowed, "refilled");
    assert_eq!(later.refused_by, None, "an allowed answer names no rule");

    // All or nothing: a refusal by one bucket takes nothing from the others.
    let (a, b) = (unique("a:"), unique("b:"));
    limiter.check(&[rule(&b, 1, 60, 1)], now).await.unwrap();
    let d = limiter.check(&[rule(&a, 10, 60, 1), rule(&b, 1, 60, 1)], now).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.refused_by, Some(1), "the second rule refused");
    assert_eq!(limiter.check(&[rule(&a, 10, 60, 0)], now).await.unwrap().remaining, 10, "a untouched");

    // An unreported bucket is never what an allowed answer shows, even when it is tightest;
    // a refusal by it is shown.
    let (open, private) = (unique("open:"), unique("private:"));
    let both = |cost| [rule(&open, 50, 60, cost), rule(&private, 2, 60, cost).unreported()];
    let d = limiter.check(&both(1), now).await.unwrap();
    assert_eq!((d.allowed, d.limit, d.remaining), (true, 50, 49), "the reported bucket is shown");
    let alone = limiter.check(&[rule(&private, 2, 60, 0).unreported()], now).await.unwrap();
    assert_eq!((alone.limit, alone.remaining), (2, 1), "with nothing else to show, the bucket is shown");
    limiter.check(&both(1), now).await.unwrap();
    let d = limiter.check(&both(1), now).await.unwrap();
    assert_eq!((d.allowed, d.limit), (false, 2), "the refusing bucket is shown");

    // Cost 0 looks without taking.
    let f = unique("fail:");
    for _ in 0..3 {
        assert!(limiter.check(&[rule(&f, 2, 60, 0)], now).await.unwrap().allowed);
    }
    limiter.check(&[rule(&f, 2, 60, 1)], now).await.unwrap();
    limiter.check(&[rule(&f, 2, 60, 1)], now).await.unwrap();
    assert!(!limiter.check(&[rule(&f, 2, 60, 0)], now).await.unwrap().allowed, "empty bucket refuses a look too");

    // Concurrency: 20 racing requests against a bucket of 7 → exactly 7 allowed.
    let k = unique("race:");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (limiter, k) = (Arc::clone(&limiter), k.clone());
            tokio::spawn(async move { limiter.check(&[rule(&k, 7, 3600, 1)], now).await.unwrap().allowed })
        })
        .collect();
    let allowed = futures::future::join_all(tasks).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(allowed, 7);
}

/// First use wins; the key is free again after `until`.
pub async fn replay_guard<G: ReplayGuard + 'static>(guard: Arc<G>) {
    let now = t0();
    let jti = unique("jti:");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (guard, jti) = (Arc::clone(&guard), jti.clone());
            tokio::spawn(async move { guard.first_use(&jti, now + secs(60), now).await.unwrap() })
        })
        .collect();
    let firsts = futures::future::join_all(tasks).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(firsts, 1);
    assert!(!guard.first_use(&jti, now + secs(60), now + secs(59)).await.unwrap());
    assert!(guard.first_use(&jti, now + secs(200), now + secs(61)).await.unwrap(), "expired entries are forgotten");
}

/// Codes single-use; opaque tokens expire; refresh reuse revokes the family.
pub async fn grant_store<S: GrantStore + 'static>(store: Arc<S>) {
    let now = t0();
    let code = AuthorizationCode {
        code_hash: unique_hash(),
        client_id: ClientId::new(unique("client")),
        user_id: UserId("email|0123456789abcdef01234567".into()),
        redirect_uri: "http://localhost:3000/callback".into(),
        scope: "openid".into(),
        audience: None,
        nonce: Some("n".into()),
        code_challenge: None,
        expires_at: now + secs(60),
    };
    store.save_code(code.clone()).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, h) = (Arc::clone(&store), code.code_hash);
            tokio::spawn(async move { store.take_code(&h, now).await.unwrap() })
        })
        .collect();
    let taken: Vec<_> = futures::future::join_all(tasks).await.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(taken, vec![code.clone()], "one winner");
    let expired = AuthorizationCode { code_hash: unique_hash(), ..code.clone() };
    store.save_code(expired.clone()).await.unwrap();
    assert_eq!(store.take_code(&expired.code_hash, now + secs(60)).await.unwrap(), None);

    let opaque = OpaqueToken {
        token_hash: unique_hash(),
        client_id: code.client_id.clone(),
        user_id: code.user_id.clone(),
        scope: "openid email".into(),
        expires_at: now + secs(100),
    };
    store.save_opaque(opaque.clone()).await.unwrap();
    assert_eq!(store.find_opaque(&opaque.token_hash, now).await.unwrap(), Some(opaque.clone()));
    assert_eq!(store.find_opaque(&opaque.token_hash, now + secs(100)).await.unwrap(), None);

    let family = unique("fam");
    let rt = |h: SecretHash| RefreshToken {
        token_hash: h,
        family_id: family.clone(),
        client_id: code.client_id.clone(),
        user_id: code.user_id.clone(),
        scope: "openid offline_access".into(),
        audience: None,
        expires_at: now + secs(86_400),
    };
    let (r1, r2, r3) = (rt(unique_hash()), rt(unique_hash()), rt(unique_hash()));
    store.save_refresh(r1.clone()).await.unwrap();
    let exp = r2.expires_at;
    assert_eq!(
        store.rotate_refresh(&ClientId::new("another-client"), &r1.token_hash, r2.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Invalid,
        "another client's try is refused"
    );
    assert_eq!(
        store.rotate_refresh(&r1.client_id, &r1.token_hash, r2.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Rotated(r1.clone())
    );
    // The new token inherits the family, user and scope of the one it replaced.
    let r4 = rt(unique_hash());
    assert_eq!(
        store.rotate_refresh(&r1.client_id, &r2.token_hash, r4.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Rotated(r2.clone())
    );
    assert_eq!(
        store.rotate_refresh(&r1.client_id, &r1.token_hash, r3.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Reused
    );
    assert_eq!(
        store.rotate_refresh(&r1.client_id, &r4.token_hash, r3.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Invalid,
        "reuse revoked the family, the current token included"
    );
    assert_eq!(
        store.rotate_refresh(&r1.client_id, &unique_hash(), r3.token_hash, exp, now).await.unwrap(),
        RefreshOutcome::Invalid
    );
    // Concurrent rotations of one token: one succeeds, the others see reuse.
    let r5 = RefreshToken { family_id: unique("fam"), ..rt(unique_hash()) };
    store.save_refresh(r5.clone()).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, h, c) = (Arc::clone(&store), r5.token_hash, r5.client_id.clone());
            tokio::spawn(async move { store.rotate_refresh(&c, &h, unique_hash(), exp, now).await.unwrap() })
        })
        .collect();
    let outcomes: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Rotated(_))).count(), 1, "{outcomes:?}");
    // A family's lifetime is absolute: rotating never moves its end.
    let r6 = RefreshToken { family_id: unique("fam"), expires_at: now + secs(100), ..rt(unique_hash()) };
    store.save_refresh(r6.clone()).await.unwrap();
    let r7 = unique_hash();
    store.rotate_refresh(&r6.client_id, &r6.token_hash, r7, now + secs(10_000), now).await.unwrap();
    match store.rotate_refresh(&r6.client_id, &r7, unique_hash(), now + secs(10_000), now).await.unwrap() {
        RefreshOutcome::Rotated(t) => assert_eq!(t.expires_at, r6.expires_at),
        other => panic!("{other:?}"),
    }
}

fn key_record(kid: &str) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        alg: "RS256".into(),
        private_key: vec![1, 2, 3],
        public_jwk: serde_json::json!({"kid": kid}),
        created_at: t0(),
        state: KeyState::Active,
    }
}

/// One active key; the previous one published until it retires.
pub async fn key_store<S: KeyStore + 'static>(store: Arc<S>) {
    let now = t0();
    let (k1, k2) = (unique("k"), unique("k"));
    store.activate(key_record(&k1), now).await.unwrap();
    assert_eq!(store.active().await.unwrap().unwrap().kid, k1);
    store.activate(key_record(&k2), now + secs(3600)).await.unwrap();
    assert_eq!(store.active().await.unwrap().unwrap().kid, k2);
    let published: Vec<_> = store.published(now).await.unwrap().into_iter().map(|k| k.kid).collect();
    assert!(published.contains(&k1) && published.contains(&k2));
    let later: Vec<_> = store.published(now + secs(3600)).await.unwrap().into_iter().map(|k| k.kid).collect();
    assert!(!later.contains(&k1) && later.contains(&k2), "a retiring key leaves the JWKS at its time");
    assert!(!store.retire(&k2).await.unwrap(), "the active key cannot be retired");
    assert!(store.retire(&k1).await.unwrap());
    assert!(!store.published(now).await.unwrap().iter().any(|k| k.kid == k1));
}

/// Events come back newest first.
pub async fn audit_log<A: AuditLog + 'static>(log: Arc<A>) {
    let tag = unique("audit");
    for (i, kind) in
        [AuditKind::CodeLinkSent, AuditKind::LoginFailed, AuditKind::LoginSucceeded].into_iter().enumerate()
    {
        let mut e = AuditEvent::new(kind, t0() + secs(i64::try_from(i).unwrap() + 1_000_000_000));
        e.detail = Some(tag.clone());
        log.record(e).await.unwrap();
    }
    let recent: Vec<_> =
        log.recent(1000).await.unwrap().into_iter().filter(|e| e.detail.as_deref() == Some(&tag)).collect();
    let kinds: Vec<_> = recent.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![AuditKind::LoginSucceeded, AuditKind::LoginFailed, AuditKind::CodeLinkSent]);

    // A batch, every field kept.
    let tag = unique("audit-batch");
    let batch: Vec<AuditEvent> = (0..3)
        .map(|i| {
            let mut e = AuditEvent::new(AuditKind::NotificationSent, t0() + secs(1_000_000_100 + i));
            e.client_id = Some(format!("client-{i}"));
            e.connection = Some("email".into());
            e.identifier = Some("j***@example.com".into());
            e.user_id = (i == 1).then(|| "email|1".to_owned());
            e.ip = Some("192.0.2.1".into());
            e.detail = Some(tag.clone());
            e
        })
        .collect();
    log.record_many(batch.clone()).await.unwrap();
    log.record_many(Vec::new()).await.unwrap();
    let mut recent: Vec<_> =
        log.recent(1000).await.unwrap().into_iter().filter(|e| e.detail.as_deref() == Some(&tag)).collect();
    recent.reverse();
    assert_eq!(recent, batch);
}

/// Retention deletes only what is past its cutoff, at most `batch` of each kind per call.
pub async fn retention<S>(store: Arc<S>)
where
    S: ChallengeStore + Outbox + GrantStore + AuditLog + Retention + 'static,
{
    // Far from every other suite's times; `old` rows are past the cutoffs, `now` rows are not.
    let now = t0() + secs(40_000_000);
    let old = now - secs(7200);
    let cutoffs = crate::Cutoffs {
        challenges: now - secs(60),
        grants: now - secs(60),
        outbox: now - secs(60),
        audit: Some(now - secs(60)),
    };
    let lease = Duration::from_secs(30);

    // Challenges (with their messages): an old one whose message failed, and a live one.
    let (old_key, live_key) = (email_key(&unique("client")), email_key(&unique("client")));
    let failed = message(&old_key, old);
    store.start(challenge(&old_key, hash(7), None, old), failed.clone(), issued(old), None).await.unwrap();
    store.claim(&failed.id, old, lease).await.unwrap().expect("claimed");
    store.finish(&failed.id, DeliveryState::Failed("refused".into()), old).await.unwrap();
    let pending = message(&live_key, now);
    store.start(challenge(&live_key, hash(7), None, now), pending.clone(), issued(now), None).await.unwrap();
    // An old challenge whose start's event is recent enough to keep (audit cutoff below
    // `kept_at`): the event outlives the challenge.
    let kept_key = email_key(&unique("client"));
    let kept_at = now - secs(30);
    let mut kept_issue = issued(kept_at);
    kept_issue.detail = Some(unique("kept-issue"));
    let mut old_challenge = challenge(&kept_key, hash(7), None, old);
    old_challenge.created_at = kept_at;
    store.start(old_challenge, message(&kept_key, old), kept_issue.clone(), None).await.unwrap();

    // A live key started again and again: each start's event is kept once across sweeps, and an
    // old one goes with the audit cutoff (the replaced starts' events are the log's, wherever a
    // store keeps them).
    let again_key = email_key(&unique("client"));
    let mut too_old = issued(old);
    too_old.detail = Some(unique("again-old"));
    let mut again = vec![];
    for i in 0..3 {
        let mut e = issued(now - secs(10 - i));
        e.detail = Some(unique("again"));
        again.push(e);
    }
    for e in std::iter::once(&too_old).chain(&again) {
        store
            .start(challenge(&again_key, hash(7), None, now), message(&again_key, now), e.clone(), None)
            .await
            .unwrap();
    }

    let code = |expires_at| AuthorizationCode {
        code_hash: unique_hash(),
        client_id: ClientId::new(unique("client")),
        user_id: UserId("email|0123456789abcdef01234567".into()),
        redirect_uri: "http://localhost:3000/callback".into(),
        scope: "openid".into(),
        audience: None,
        nonce: None,
        code_challenge: None,
        expires_at,
    };
    let (old_code, live_code) = (code(old + secs(60)), code(now + secs(60)));
    store.save_code(old_code.clone()).await.unwrap();
    store.save_code(live_code.clone()).await.unwrap();

    let (old_mark, live_mark) = (unique("old-event"), unique("live-event"));
    let mut event = AuditEvent::new(AuditKind::LoginFailed, old);
    event.detail = Some(old_mark.clone());
    store.record(event).await.unwrap();
    let mut event = AuditEvent::new(AuditKind::LoginFailed, now);
    event.detail = Some(live_mark.clone());
    store.record(event).await.unwrap();

    // A batch of one takes at most one row of each kind.
    let one = store.sweep(&cutoffs, 1).await.unwrap().expect("no other sweeper");
    assert!(one.challenges <= 1 && one.grants <= 3 && one.outbox <= 1 && one.audit <= 1, "{one:?}");
    // Then until the store has looked at everything (other suites' dead rows go too).
    let mut rounds = 0;
    while store.sweep(&cutoffs, 1000).await.unwrap().expect("no other sweeper").more {
        rounds += 1;
        assert!(rounds < 10_000, "the sweep ends");
    }

    let check = |key: &ChallengeKey, at| {
        let store = Arc::clone(&store);
        let key = key.clone();
        async move { store.check(&key, Proof::Code(hash(7)), false, at).await.unwrap() }
    };
    assert!(matches!(check(&old_key, old + secs(1)).await, CheckOutcome::NotFound), "expired challenge swept");
    assert!(matches!(check(&live_key, now + secs(1)).await, CheckOutcome::Accepted(_)), "live challenge kept");
    assert_eq!(store.state(&failed.id).await.unwrap(), None, "old failed message swept");
    assert_eq!(store.state(&pending.id).await.unwrap(), Some(DeliveryState::Pending), "pending message kept");
    assert!(store.take_code(&old_code.code_hash, old).await.unwrap().is_none(), "expired code swept");
    assert!(store.take_code(&live_code.code_hash, now).await.unwrap().is_some(), "live code kept");
    let recent = store.recent(1_000_000).await.unwrap();
    let marked = |mark: &str| recent.iter().any(|e| e.detail.as_deref() == Some(mark));
    assert!(!marked(&old_mark), "old audit event swept");
    assert!(marked(&live_mark), "recent audit event kept");
    assert!(matches!(check(&kept_key, old + secs(1)).await, CheckOutcome::NotFound), "its challenge swept");
    assert_eq!(recent.iter().filter(|e| **e == kept_issue).count(), 1, "a swept challenge's start event kept");

    for e in &again {
        assert_eq!(recent.iter().filter(|r| *r == e).count(), 1, "a live row's replaced start's event, once: {e:?}");
    }
    assert!(!recent.contains(&too_old), "a replaced start's event past the audit cutoff swept");
    assert!(matches!(check(&again_key, now + secs(1)).await, CheckOutcome::Accepted(_)), "the row lives on");
    store.sweep(&cutoffs, 1000).await.unwrap();
    let recent = store.recent(1_000_000).await.unwrap();
    for e in &again {
        assert_eq!(recent.iter().filter(|r| *r == e).count(), 1, "moved once: {e:?}");
    }

    // Audit events are kept for ever unless an age is set.
    let mut event = AuditEvent::new(AuditKind::LoginFailed, old);
    let kept = unique("kept-event");
    event.detail = Some(kept.clone());
    store.record(event).await.unwrap();
    store.sweep(&crate::Cutoffs { audit: None, ..cutoffs }, 1000).await.unwrap();
    assert!(store.recent(1_000_000).await.unwrap().iter().any(|e| e.detail.as_deref() == Some(kept.as_str())));
}

/// `LoginStore::check_and_login`: a refused proof answers exactly what `check` would and writes
/// nothing else; an accepted one records the login, the token and the event in one step; a
/// blocked user's login writes neither token nor event.
pub async fn login_store<S>(store: Arc<S>)
where
    S: crate::LoginStore + ChallengeStore + UserStore + GrantStore + AuditLog + 'static,
{
    use crate::{LoginOutcome, LoginWrite};
    let now = t0();
    let write = |key: &ChallengeKey, proof: Proof, at: OffsetDateTime, token: Option<OpaqueToken>| {
        let mut event = AuditEvent::new(AuditKind::LoginSucceeded, at);
        event.client_id = Some(key.client_id.0.clone());
        event.connection = Some(key.connection.0.clone());
        event.detail = Some("contract".into());
        LoginWrite {
            key: key.clone(),
            proof,
            now: at,
            new_user_id: UserId(unique("email|")),
            access_token: token,
            event,
        }
    };
    let token = |client: &ChallengeKey| OpaqueToken {
        token_hash: unique_hash(),
        client_id: client.client_id.clone(),
        user_id: UserId("ignored".into()),
        scope: "openid email".into(),
        expires_at: now + secs(3600),
    };

    // Nothing to check: NotFound, no user made.
    let key = email_key(&unique("login"));
    let outcome = store.check_and_login(write(&key, Proof::Code(hash(1)), now, Some(token(&key)))).await.unwrap();
    assert!(matches!(outcome, LoginOutcome::Refused(CheckOutcome::NotFound)), "{outcome:?}");
    assert!(store.find(&key.connection, &key.identifier).await.unwrap().is_none(), "a refused login makes no user");

    // A wrong code counts a try; the right one logs in, with the token and the event.
    store.start(challenge(&key, hash(1), None, now), message(&key, now), issued(now), None).await.unwrap();
    let outcome = store.check_and_login(write(&key, Proof::Code(hash(2)), now, Some(token(&key)))).await.unwrap();
    assert!(matches!(outcome, LoginOutcome::Refused(CheckOutcome::Wrong { attempts_left: 2 })), "{outcome:?}");
    assert!(store.find(&key.connection, &key.identifier).await.unwrap().is_none());
    let tok = token(&key);
    let login = write(&key, Proof::Code(hash(1)), now, Some(tok.clone()));
    let new_id = login.new_user_id.clone();
    let LoginOutcome::LoggedIn(user) = store.check_and_login(login).await.unwrap() else { panic!("the right code") };
    assert_eq!((user.id.clone(), user.logins_count, user.blocked), (new_id.clone(), 1, false));
    assert_eq!(user.identifier, key.identifier);
    assert!(user.email_verified, "an email login verifies the address");
    let saved = store.find_opaque(&tok.token_hash, now).await.unwrap().expect("the access token is stored");
    assert_eq!((saved.user_id, saved.scope.as_str()), (new_id.clone(), "openid email"));
    let (events, _) = store.for_user(&new_id.0, 0, 10).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == AuditKind::LoginSucceeded && e.detail.as_deref() == Some("contract")),
        "the login's event carries the user: {events:?}"
    );
    // Used up: the same code again is NotFound and counts nothing more.
    let again = store.check_and_login(write(&key, Proof::Code(hash(1)), now, None)).await.unwrap();
    assert!(matches!(again, LoginOutcome::Refused(CheckOutcome::NotFound)), "{again:?}");

    // A second login is the same user, counted; no token asked for, none made.
    store.start(challenge(&key, hash(3), None, now), message(&key, now), issued(now), None).await.unwrap();
    let LoginOutcome::LoggedIn(second) =
        store.check_and_login(write(&key, Proof::Code(hash(3)), now, None)).await.unwrap()
    else {
        panic!("the second login")
    };
    assert_eq!((second.id.clone(), second.logins_count), (new_id.clone(), 2));

    // Expired and exhausted codes are refused as `check` refuses them.
    store.start(challenge(&key, hash(4), None, now), message(&key, now), issued(now), None).await.unwrap();
    let late = store.check_and_login(write(&key, Proof::Code(hash(4)), now + secs(181), None)).await.unwrap();
    assert!(matches!(late, LoginOutcome::Refused(CheckOutcome::Expired)), "{late:?}");
    store.start(challenge(&key, hash(5), None, now), message(&key, now), issued(now), None).await.unwrap();
    for left in [2, 1] {
        let o = store.check_and_login(write(&key, Proof::Code(hash(6)), now, None)).await.unwrap();
        assert!(
            matches!(o, LoginOutcome::Refused(CheckOutcome::Wrong { attempts_left }) if attempts_left == left),
            "{o:?}"
        );
    }
    let last = store.check_and_login(write(&key, Proof::Code(hash(6)), now, None)).await.unwrap();
    assert!(matches!(last, LoginOutcome::Refused(CheckOutcome::Wrong { attempts_left: 0 })), "{last:?}");
    let dead = store.check_and_login(write(&key, Proof::Code(hash(5)), now, None)).await.unwrap();
    assert!(matches!(dead, LoginOutcome::Refused(CheckOutcome::Exhausted)), "{dead:?}");

    // Blocked after the code went out: the code is used, the user comes back blocked and
    // uncounted, and neither a token nor an event is written.
    store.start(challenge(&key, hash(7), None, now), message(&key, now), issued(now), None).await.unwrap();
    let patch = UserPatch { blocked: Some(true), ..UserPatch::default() };
    store.update(&new_id, &patch, now).await.unwrap().expect("the user");
    let (before, _) = store.for_user(&new_id.0, 0, 100).await.unwrap();
    let tok = token(&key);
    let blocked = store.check_and_login(write(&key, Proof::Code(hash(7)), now, Some(tok.clone()))).await.unwrap();
    let LoginOutcome::LoggedIn(user) = blocked else { panic!("a right code of a blocked user: {blocked:?}") };
    assert!(user.blocked);
    assert_eq!(user.logins_count, 2, "a blocked user's login is not counted");
    assert!(store.find_opaque(&tok.token_hash, now).await.unwrap().is_none(), "no token for a blocked user");
    let (after, _) = store.for_user(&new_id.0, 0, 100).await.unwrap();
    assert_eq!(after.len(), before.len(), "no login event for a blocked user");
}
