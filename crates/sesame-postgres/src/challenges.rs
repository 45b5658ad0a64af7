use std::time::Duration;

use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use sesame_domain::{
    AuthParams, Challenge, ChallengeKey, Channel, CheckOutcome, ClientId, CodePolicy, ConnectionName, Email,
    Identifier, MessageId, NewChallenge, OutboxMessage, PhoneNumber, Proof, SealedMessage, SecretHash, Send,
};
use sesame_ports::{
    AuditEvent, Backlog, ChallengeStore, ClaimedMessage, DeliveryState, Outbox, Settled, Settlement, StartOutcome,
    StoreError,
};
use time::OffsetDateTime;

use crate::clients::from_name;
use crate::grants::bind_audit;
use crate::prepared::{Prepared, prepared};
use crate::{PgStore, db_err};

/// `(kind, canonical value)` as stored.
pub(crate) fn identifier_parts(id: &Identifier) -> (&'static str, &str) {
    match id {
        Identifier::Email(e) => ("email", e.as_str()),
        Identifier::Phone(p) => ("phone", p.e164()),
    }
}

pub(crate) fn identifier_from(kind: &str, value: &str) -> Result<Identifier, StoreError> {
    let parsed = match kind {
        "email" => Email::parse(value).map(Identifier::Email),
        "phone" => PhoneNumber::parse(value).map(Identifier::Phone),
        other => return Err(StoreError::Unexpected(anyhow::anyhow!("unknown identifier kind {other:?}"))),
    };
    parsed.map_err(|e| StoreError::Unexpected(anyhow::anyhow!("stored identifier no longer parses: {e}")))
}

fn hash_from(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    SecretHash::from_slice(bytes).map_err(|e| StoreError::Unexpected(anyhow::anyhow!("hash column: {e}")))
}

#[derive(QueryableByName)]
struct ChallengeRow {
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = Text)]
    connection: String,
    #[diesel(sql_type = Text)]
    identifier_kind: String,
    #[diesel(sql_type = Text)]
    identifier: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Bytea)]
    code_hash: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    link_hash: Option<Vec<u8>>,
    #[diesel(sql_type = Text)]
    send: String,
    #[diesel(sql_type = Jsonb)]
    auth_params: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    language: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    consumed_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Bool)]
    matched: bool,
}

impl ChallengeRow {
    fn into_challenge(self) -> Result<Challenge, StoreError> {
        let auth_params = match self.auth_params {
            serde_json::Value::Object(map) => AuthParams(map),
            _ => AuthParams::default(),
        };
        let send: Send = from_name(&self.send)?;
        Ok(Challenge {
            challenge: NewChallenge {
                id: self.id,
                key: ChallengeKey {
                    client_id: ClientId::new(self.client_id),
                    connection: ConnectionName::new(self.connection),
                    identifier: identifier_from(&self.identifier_kind, &self.identifier)?,
                },
                code_hash: hash_from(&self.code_hash)?,
                link_hash: self.link_hash.as_deref().map(hash_from).transpose()?,
                send,
                auth_params,
                language: self.language,
                created_at: self.created_at,
                expires_at: self.expires_at,
            },
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            consumed_at: self.consumed_at,
        })
    }
}

#[derive(QueryableByName)]
struct ChallengeState {
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    consumed_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Bool)]
    matched: bool,
}

const MAX_ATTEMPTS: i32 = CodePolicy::MAX_ATTEMPTS as i32;

/// `ChallengeStore::start`'s statement, one statement writing one row: the challenge with its
/// message (enqueued, already claimed when `$19` is given) and its audit event. `$1`–`$12` the
/// challenge, `$13`–`$18` the message, `$19` the lease, `$20`–`$27` the event; `$named` an
/// extra CTE (see `START_NAMED`).
///
/// - Nothing is written for a blocked user (an index probe of `users` in the same statement).
/// - A row already there for the key is overwritten: its code dies, and so does its message if
///   still unsent (its code is dead; a worker already sending it finishes, and its settlement
///   then matches no row). Its event is appended to the row's `prior_events` in the same write
///   (the update sees the row as it is when it locks it, so of two racing starts the second
///   keeps the first's event): nothing else is read or written. Retention moves `prior_events`
///   into `audit_events` (`retention.rs`), and `AuditLog::recent` reads them until then.
macro_rules! start_statement {
    ($named:literal) => {
        concat!(
            "WITH blocked AS (SELECT 1 FROM users WHERE connection = $2 AND identifier = $4 AND blocked), \
             put AS ( \
               INSERT INTO challenges (client_id, connection, identifier_kind, identifier, id, code_hash, link_hash, \
                 send, auth_params, language, created_at, expires_at, attempts, consumed_at, \
                 message_id, channel, recipient, sealed, message_created_at, message_expires_at, delivery, reason, \
                 sends, due_at, lease_until, last_error, finished_at, ",
            row_event_columns!(),
            ") \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, NULL::timestamptz, \
                 $13, $14, $15, $16, $17, $18, 'pending', NULL::text, \
                 CASE WHEN $19::timestamptz IS NULL THEN 0 ELSE 1 END, $17, $19, NULL::text, NULL::timestamptz, \
                 CASE WHEN $25::text IS NULL THEN $20::timestamptz END, CASE WHEN $25::text IS NULL THEN $21::text END, \
                 CASE WHEN $25::text IS NULL THEN $22::text END, CASE WHEN $25::text IS NULL THEN $23::text END, \
                 CASE WHEN $25::text IS NULL THEN $24::text END, CASE WHEN $25::text IS NULL THEN $26::text END, \
                 CASE WHEN $25::text IS NULL THEN $27::text END \
               WHERE NOT EXISTS (SELECT 1 FROM blocked) \
               ON CONFLICT (client_id, connection, identifier) DO UPDATE SET \
                 identifier_kind = EXCLUDED.identifier_kind, id = EXCLUDED.id, code_hash = EXCLUDED.code_hash, \
                 link_hash = EXCLUDED.link_hash, send = EXCLUDED.send, auth_params = EXCLUDED.auth_params, \
                 language = EXCLUDED.language, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 attempts = 0, consumed_at = NULL, \
                 message_id = EXCLUDED.message_id, channel = EXCLUDED.channel, recipient = EXCLUDED.recipient, \
                 sealed = EXCLUDED.sealed, message_created_at = EXCLUDED.message_created_at, \
                 message_expires_at = EXCLUDED.message_expires_at, delivery = 'pending', reason = NULL, \
                 sends = EXCLUDED.sends, due_at = EXCLUDED.due_at, lease_until = EXCLUDED.lease_until, \
                 last_error = NULL, finished_at = NULL, event_at = EXCLUDED.event_at, event_kind = EXCLUDED.event_kind, \
                 event_client_id = EXCLUDED.event_client_id, event_connection = EXCLUDED.event_connection, \
                 event_identifier = EXCLUDED.event_identifier, event_ip = EXCLUDED.event_ip, \
                 event_detail = EXCLUDED.event_detail, \
                 prior_events = CASE WHEN challenges.event_at IS NULL THEN challenges.prior_events \
                   ELSE COALESCE(challenges.prior_events, '[]'::jsonb) || jsonb_build_array(",
            row_event_as_json!("challenges"),
            ") END \
               RETURNING 1)",
            $named,
            " SELECT EXISTS (SELECT 1 FROM put) AS stored, EXISTS (SELECT 1 FROM blocked) AS blocked"
        )
    };
}

/// A start whose event names no user (every start of the flows): the event stays on the row.
pub(crate) const START: &str = start_statement!("");

/// A start whose event names a user: that event goes to `audit_events` now (a user's listing is
/// by user id, over that table), and the row holds none of its own.
pub(crate) const START_NAMED: &str = start_statement!(
    ", named AS (INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
       SELECT $20, $21, $22, $23, $24, $25, $26, $27 WHERE EXISTS (SELECT 1 FROM put))"
);

#[derive(QueryableByName)]
struct Started {
    #[diesel(sql_type = Bool)]
    stored: bool,
    #[diesel(sql_type = Bool)]
    blocked: bool,
}

/// `START`'s or `START_NAMED`'s binds, in their order.
fn bind_start<'a, S>(
    query: Prepared<'a, S>,
    c: &'a NewChallenge,
    kind: &'a str,
    identifier: &'a str,
    m: &'a OutboxMessage,
    claimed_until: Option<OffsetDateTime>,
    event: AuditEvent,
) -> Prepared<'a, S> {
    let query = query
        .bind::<Text, _>(c.key.client_id.as_str())
        .bind::<Text, _>(c.key.connection.as_str())
        .bind::<Text, _>(kind)
        .bind::<Text, _>(identifier)
        .bind::<Text, _>(&c.id)
        .bind::<Bytea, _>(c.code_hash.0.to_vec())
        .bind::<Nullable<Bytea>, _>(c.link_hash.map(|h| h.0.to_vec()))
        .bind::<Text, _>(c.send.as_str())
        .bind::<Jsonb, _>(serde_json::Value::Object(c.auth_params.0.clone()))
        .bind::<Nullable<Text>, _>(c.language.as_deref())
        .bind::<Timestamptz, _>(c.created_at)
        .bind::<Timestamptz, _>(c.expires_at)
        .bind::<Text, _>(&m.id.0)
        .bind::<Text, _>(m.channel.as_str())
        .bind::<Text, _>(&m.recipient)
        .bind::<Bytea, _>(&m.sealed.0)
        .bind::<Timestamptz, _>(m.created_at)
        .bind::<Timestamptz, _>(m.expires_at)
        .bind::<Nullable<Timestamptz>, _>(claimed_until);
    bind_audit(query, event)
}

#[async_trait]
impl ChallengeStore for PgStore {
    async fn start(
        &self,
        c: NewChallenge,
        m: OutboxMessage,
        event: AuditEvent,
        claimed_until: Option<OffsetDateTime>,
    ) -> Result<StartOutcome, StoreError> {
        let (kind, identifier) = identifier_parts(&c.key.identifier);
        let mut conn = self.conn().await?;
        let written: Started = if event.user_id.is_some() {
            bind_start(prepared!(START_NAMED), &c, kind, identifier, &m, claimed_until, event)
                .get_result(&mut conn)
                .await
        } else {
            bind_start(prepared!(START), &c, kind, identifier, &m, claimed_until, event).get_result(&mut conn).await
        }
        .map_err(db_err("starting a challenge"))?;
        match (written.stored, written.blocked) {
            (true, _) => Ok(StartOutcome::Stored),
            (false, true) => Ok(StartOutcome::Blocked),
            // The upsert writes unless the user is blocked.
            (false, false) => Err(StoreError::Unexpected(anyhow::anyhow!("a start wrote no row"))),
        }
    }

    async fn check(
        &self,
        key: &ChallengeKey,
        proof: Proof,
        consume: bool,
        now: OffsetDateTime,
    ) -> Result<CheckOutcome, StoreError> {
        let (is_link, hash) = match proof {
            Proof::Code(h) => (false, h),
            Proof::Link(h) => (true, h),
        };
        let (_, identifier) = identifier_parts(&key.identifier);
        let mut conn = self.conn().await?;
        // One statement: the row lock serialises concurrent checks of one key, the try is
        // counted in the same write that compares, and only a live challenge is touched. The
        // compared values are HMACs, so the equality's timing tells an attacker nothing.
        let rows: Vec<ChallengeRow> = prepared!(
            "UPDATE challenges SET \
               attempts = attempts + CASE WHEN COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) \
                 THEN 0 ELSE 1 END, \
               consumed_at = CASE WHEN COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) AND $6 \
                 THEN $7 ELSE consumed_at END \
             WHERE client_id = $1 AND connection = $2 AND identifier = $3 \
               AND consumed_at IS NULL AND expires_at > $7 AND attempts < $8 \
             RETURNING client_id, connection, identifier_kind, identifier, id, code_hash, link_hash, send, \
               auth_params, language, created_at, expires_at, attempts, consumed_at, \
               COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) AS matched",
        )
        .bind::<Text, _>(key.client_id.as_str())
        .bind::<Text, _>(key.connection.as_str())
        .bind::<Text, _>(identifier)
        .bind::<Bytea, _>(hash.0.to_vec())
        .bind::<Bool, _>(is_link)
        .bind::<Bool, _>(consume)
        .bind::<Timestamptz, _>(now)
        .bind::<Integer, _>(MAX_ATTEMPTS)
        .load(&mut conn)
        .await
        .map_err(db_err("checking a challenge"))?;
        if let Some(row) = rows.into_iter().next() {
            if row.matched {
                return Ok(CheckOutcome::Accepted(Box::new(row.into_challenge()?)));
            }
            let left = MAX_ATTEMPTS - row.attempts;
            return Ok(CheckOutcome::Wrong { attempts_left: u32::try_from(left).unwrap_or(0) });
        }
        drop(conn);
        self.why_refused(key, is_link, &hash, now).await
    }
}

impl PgStore {
    /// Nothing live was touched by a check: say why, in the memory adapter's order, and only to
    /// whoever holds the dead code. Reads only.
    pub(crate) async fn why_refused(
        &self,
        key: &ChallengeKey,
        is_link: bool,
        hash: &SecretHash,
        now: OffsetDateTime,
    ) -> Result<CheckOutcome, StoreError> {
        let (_, identifier) = identifier_parts(&key.identifier);
        let mut conn = self.conn().await?;
        let state: Vec<ChallengeState> = prepared!(
            "SELECT expires_at, attempts, consumed_at, \
               COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) AS matched \
             FROM challenges WHERE client_id = $1 AND connection = $2 AND identifier = $3",
        )
        .bind::<Text, _>(key.client_id.as_str())
        .bind::<Text, _>(key.connection.as_str())
        .bind::<Text, _>(identifier)
        .bind::<Bytea, _>(hash.0.to_vec())
        .bind::<Bool, _>(is_link)
        .load(&mut conn)
        .await
        .map_err(db_err("reading a challenge"))?;
        Ok(match state.into_iter().next() {
            None => CheckOutcome::NotFound,
            Some(s) if s.consumed_at.is_some() || !s.matched => CheckOutcome::NotFound,
            Some(s) if s.expires_at <= now => CheckOutcome::Expired,
            Some(s) if s.attempts >= MAX_ATTEMPTS => CheckOutcome::Exhausted,
            // Changed between the two statements (a new start); the caller may try again.
            Some(_) => CheckOutcome::NotFound,
        })
    }
}

#[derive(QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    recipient: String,
    #[diesel(sql_type = Bytea)]
    sealed: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl OutboxRow {
    fn into_claimed(self) -> Result<ClaimedMessage, StoreError> {
        let channel: Channel = from_name(&self.channel)?;
        Ok(ClaimedMessage {
            message: OutboxMessage {
                id: MessageId(self.id),
                channel,
                recipient: self.recipient,
                sealed: SealedMessage(self.sealed),
                created_at: self.created_at,
                expires_at: self.expires_at,
            },
            attempt: u32::try_from(self.attempts).unwrap_or(0),
        })
    }
}

/// A claimed challenge row's message, in `OutboxRow`'s columns.
macro_rules! claimed_columns {
    () => {
        "message_id AS id, channel, recipient, sealed, message_created_at AS created_at, \
         message_expires_at AS expires_at, sends AS attempts"
    };
}

/// `Outbox::settle`: `$1`–`$5` id, status (`sent` too), reason, due time and error of each
/// message; `$6` now. One statement for both homes of a message: its challenge row (where a
/// start puts it) and the outbox table (where the previous release put it: drained until a
/// later release drops the table).
///
/// On the challenge row a sent message's state stays (`sent`, the row lives while its code
/// does) with its sealed body wiped; in the outbox table a sent message is deleted, as before.
///
/// "Pending" is written `<> ALL ('{sent,failed,dropped}')` here and in `CLAIM_ONE` on purpose:
/// a plain `= 'pending'` lets the planner use the partial index of pending messages, and a plan
/// cached while the table was small then scans every pending row for each message, so that a
/// backlog slows its own draining (seen in the bench: a settle ran for seconds). With this form
/// the rows are found by message id whatever the statistics said (`statements.rs` checks it).
pub(crate) const SETTLE: &str = "\
    WITH s AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) \
      AS s(id, status, reason, due_at, error)), \
    ch AS (UPDATE challenges c SET delivery = s.status, reason = s.reason, lease_until = NULL, \
      due_at = COALESCE(s.due_at, c.due_at), last_error = COALESCE(s.error, c.last_error), \
      finished_at = CASE WHEN s.status = 'pending' THEN c.finished_at ELSE $6 END, \
      sealed = CASE WHEN s.status = 'pending' THEN c.sealed END \
      FROM s WHERE c.message_id = ANY($1) AND c.message_id = s.id AND c.delivery <> ALL ('{sent,failed,dropped}')), \
    gone AS (DELETE FROM outbox WHERE id = ANY(ARRAY(SELECT id FROM s WHERE status = 'sent')) \
      AND status <> ALL ('{sent,failed,dropped}')), \
    legacy AS (UPDATE outbox o SET status = s.status, reason = s.reason, lease_until = NULL, \
      due_at = COALESCE(s.due_at, o.due_at), last_error = COALESCE(s.error, o.last_error), \
      finished_at = CASE WHEN s.status = 'pending' THEN o.finished_at ELSE $6 END, \
      sealed = CASE WHEN s.status = 'pending' THEN o.sealed ELSE ''::bytea END \
      FROM s WHERE o.id = ANY($1) AND o.id = s.id AND s.status <> 'sent' AND o.status <> ALL ('{sent,failed,dropped}')) \
    SELECT 1";

/// `Outbox::claim`: `$1` the id, `$2` now, `$3` the lease's end.
pub(crate) const CLAIM_ONE: &str = concat!(
    "\
    WITH ch AS (UPDATE challenges SET sends = sends + 1, lease_until = $3 \
      WHERE message_id = $1 AND delivery <> ALL ('{sent,failed,dropped}') AND due_at <= $2 \
        AND (lease_until IS NULL OR lease_until <= $2) \
      RETURNING ",
    claimed_columns!(),
    "), \
    legacy AS (UPDATE outbox SET attempts = attempts + 1, lease_until = $3 \
      WHERE id = $1 AND status <> ALL ('{sent,failed,dropped}') AND due_at <= $2 \
        AND (lease_until IS NULL OR lease_until <= $2) \
      RETURNING id, channel, recipient, sealed, created_at, expires_at, attempts) \
    SELECT * FROM ch UNION ALL SELECT * FROM legacy"
);

/// `Outbox::claim_due`: `$1` now, `$2` the lease's end, `$3` how many. SKIP LOCKED: concurrent
/// claimers (any replica) pass over rows another one is taking.
const CLAIM_DUE: &str = concat!(
    "\
    WITH ch AS (UPDATE challenges SET sends = sends + 1, lease_until = $2 \
      WHERE ctid = ANY(ARRAY(SELECT ctid FROM challenges WHERE delivery = 'pending' AND due_at <= $1 \
        AND (lease_until IS NULL OR lease_until <= $1) ORDER BY message_created_at LIMIT $3 FOR UPDATE SKIP LOCKED)) \
      RETURNING ",
    claimed_columns!(),
    "), \
    legacy AS (UPDATE outbox o SET attempts = o.attempts + 1, lease_until = $2 \
      FROM (SELECT id FROM outbox WHERE status = 'pending' AND due_at <= $1 \
              AND (lease_until IS NULL OR lease_until <= $1) \
            ORDER BY created_at LIMIT GREATEST($3 - (SELECT count(*) FROM ch), 0) FOR UPDATE SKIP LOCKED) due \
      WHERE o.id = due.id \
      RETURNING o.id, o.channel, o.recipient, o.sealed, o.created_at, o.expires_at, o.attempts) \
    SELECT * FROM ch UNION ALL SELECT * FROM legacy"
);

#[async_trait]
impl Outbox for PgStore {
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let mut conn = self.conn().await?;
        let mut rows: Vec<OutboxRow> = prepared!(CLAIM_DUE)
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(now + lease)
            .bind::<BigInt, _>(i64::try_from(max).unwrap_or(i64::MAX))
            .load(&mut conn)
            .await
            .map_err(db_err("claiming outbox messages"))?;
        rows.sort_by_key(|r| r.created_at);
        rows.into_iter().map(OutboxRow::into_claimed).collect()
    }

    async fn claim(
        &self,
        id: &MessageId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<OutboxRow> = prepared!(CLAIM_ONE)
            .bind::<Text, _>(&id.0)
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(now + lease)
            .load(&mut conn)
            .await
            .map_err(db_err("claiming an outbox message"))?;
        rows.into_iter().next().map(OutboxRow::into_claimed).transpose()
    }

    async fn settle(&self, batch: &[Settled], now: OffsetDateTime) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let (mut ids, mut statuses, mut reasons, mut due, mut errors) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for Settled { id, outcome } in batch {
            let (status, reason, at, error) = match outcome {
                Settlement::Sent => ("sent", None, None, None),
                Settlement::Failed(reason) => ("failed", Some(reason.as_str()), None, None),
                Settlement::Dropped => ("dropped", None, None, None),
                Settlement::Retry { at, error } => ("pending", None, Some(*at), Some(error.as_str())),
            };
            ids.push(id.0.as_str());
            statuses.push(status);
            reasons.push(reason);
            due.push(at);
            errors.push(error);
        }
        let mut conn = self.conn().await?;
        // One statement for the whole batch. Only pending messages change.
        prepared!(SETTLE)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(statuses)
            .bind::<Array<Nullable<Text>>, _>(reasons)
            .bind::<Array<Nullable<Timestamptz>>, _>(due)
            .bind::<Array<Nullable<Text>>, _>(errors)
            .bind::<Timestamptz, _>(now)
            .execute(&mut conn)
            .await
            .map_err(db_err("settling outbox messages"))?;
        Ok(())
    }

    async fn state(&self, id: &MessageId) -> Result<Option<DeliveryState>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = Nullable<Text>)]
            reason: Option<String>,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = prepared!(
            "SELECT delivery AS status, reason FROM challenges WHERE message_id = $1 AND delivery IS NOT NULL \
             UNION ALL SELECT status, reason FROM outbox WHERE id = $1",
        )
        .bind::<Text, _>(&id.0)
        .load(&mut conn)
        .await
        .map_err(db_err("reading an outbox message"))?;
        let Some(r) = rows.into_iter().next() else { return Ok(None) };
        match r.status.as_str() {
            "pending" => Ok(Some(DeliveryState::Pending)),
            // Sent: gone from the outbox, as far as the port is concerned (its row may live on
            // for its code).
            "sent" => Ok(None),
            "failed" => Ok(Some(DeliveryState::Failed(r.reason.unwrap_or_default()))),
            "dropped" => Ok(Some(DeliveryState::Dropped)),
            other => Err(StoreError::Unexpected(anyhow::anyhow!("unknown outbox status {other:?}"))),
        }
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<Timestamptz>)]
            next: Option<OffsetDateTime>,
        }
        let mut conn = self.conn().await?;
        let row: Row = prepared!(
            "SELECT LEAST( \
               (SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM challenges WHERE delivery = 'pending'), \
               (SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM outbox WHERE status = 'pending') \
             ) AS next",
        )
        .get_result(&mut conn)
        .await
        .map_err(db_err("reading the outbox"))?;
        Ok(row.next)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            pending: i64,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            oldest: Option<OffsetDateTime>,
        }
        let mut conn = self.conn().await?;
        // Served by the partial indexes of pending messages: only pending rows are read.
        let row: Row = prepared!(
            "SELECT (SELECT count(*) FROM challenges WHERE delivery = 'pending') \
               + (SELECT count(*) FROM outbox WHERE status = 'pending') AS pending, \
             LEAST((SELECT min(message_created_at) FROM challenges WHERE delivery = 'pending'), \
               (SELECT min(created_at) FROM outbox WHERE status = 'pending')) AS oldest",
        )
        .get_result(&mut conn)
        .await
        .map_err(db_err("counting the outbox"))?;
        Ok(Backlog { pending: u64::try_from(row.pending).unwrap_or(0), oldest: row.oldest })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_round_trip() {
        assert_eq!(crate::clients::to_name(&sesame_domain::Send::LinkIos), "link_ios");
        assert_eq!(crate::clients::to_name(&sesame_domain::Channel::Sms), "sms");
    }
}
