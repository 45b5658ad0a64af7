//! Retention: small batches, each its own short transaction, behind a transaction-scoped
//! advisory lock so that one replica sweeps at a time.
//!
//! Tables without an index on their expiry (challenges, outbox, authorization codes, refresh
//! tokens: an index would cost every start) are walked by block range (a TID range scan of
//! `pages` blocks per batch, from a cursor that wraps around), never scanned from the start:
//! rows deleted by earlier batches stay in the heap until vacuum, and a scan from the start
//! would read them again every batch. Opaque tokens and audit events go through their
//! indexes. Rows are locked `FOR UPDATE SKIP LOCKED`: a row a start or a check holds is left for
//! a later batch, and the sweep never waits for one.
//!
//! A challenge row carries its message and its start's audit event (issue 13): the row goes
//! once its code expired before the challenges' cutoff, unless its message failed or was
//! dropped after the outbox's cutoff (that state is kept as long as an outbox row's was); as it
//! goes, its event moves into `audit_events` (unless older than the audit cutoff), in the
//! same statement.

use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Nullable, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use sesame_ports::{Cutoffs, Retention, StoreError, Swept};

use crate::prepared::prepared;
use crate::{PgStore, db_err};

/// The advisory lock key of retention (any constant; `sesame` in ASCII).
pub const RETENTION_LOCK: i64 = 0x7365_7361_6d65;

/// The next block of each walked table.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    challenges: AtomicI64,
    outbox: AtomicI64,
    codes: AtomicI64,
    refresh: AtomicI64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Deleted {
    #[diesel(sql_type = BigInt)]
    challenges: i64,
    /// Live challenge rows whose `prior_events` moved into the log.
    #[diesel(sql_type = BigInt)]
    emptied: i64,
    #[diesel(sql_type = BigInt)]
    codes: i64,
    #[diesel(sql_type = BigInt)]
    opaque: i64,
    #[diesel(sql_type = BigInt)]
    refresh: i64,
    #[diesel(sql_type = BigInt)]
    outbox: i64,
    #[diesel(sql_type = BigInt)]
    audit: i64,
    #[diesel(sql_type = BigInt)]
    challenges_pages: i64,
    #[diesel(sql_type = BigInt)]
    codes_pages: i64,
    #[diesel(sql_type = BigInt)]
    refresh_pages: i64,
    #[diesel(sql_type = BigInt)]
    outbox_pages: i64,
}

/// Moves a cursor on: past the range when the batch did not fill (all of it was looked at),
/// to the start when past the end. Returns whether there is more to look at now.
fn advance(cursor: &AtomicI64, from: i64, pages: i64, deleted: i64, batch: i64, table_pages: i64) -> bool {
    if deleted >= batch {
        // The limit cut the range short: look at it again.
        return true;
    }
    let next = from + pages;
    if next >= table_pages {
        cursor.store(0, Ordering::Relaxed);
        false
    } else {
        cursor.store(next, Ordering::Relaxed);
        true
    }
}

#[async_trait]
impl Retention for PgStore {
    async fn sweep(&self, cutoffs: &Cutoffs, batch: usize) -> Result<Option<Swept>, StoreError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX).max(1);
        // Blocks per batch of a walked table: a batch of rows is a few dozen blocks' worth.
        let pages = (batch / 8).clamp(8, 4096);
        let at = &self.sweep_at;
        let from = [&at.challenges, &at.codes, &at.refresh, &at.outbox].map(|c| c.load(Ordering::Relaxed));
        let cutoffs = *cutoffs;
        let mut conn = self.conn().await?;
        let deleted = conn
            .transaction::<_, diesel::result::Error, _>(async move |conn| {
                let lock: Locked = prepared!("SELECT pg_try_advisory_xact_lock($1) AS locked")
                    .bind::<BigInt, _>(RETENTION_LOCK)
                    .get_result(conn)
                    .await?;
                if !lock.locked {
                    return Ok(None);
                }
                // One statement: every kind, each limited to `batch` rows. A live challenge row's
                // `prior_events` (the events of the starts it replaced) move into the log too, so
                // that a key started again and again keeps a short row.
                let d: Deleted = prepared!(concat!(
                    "WITH \
                     c AS (DELETE FROM challenges WHERE ctid = ANY(ARRAY( \
                         SELECT ctid FROM challenges WHERE ctid >= format('(%s,0)', $6)::tid \
                           AND ctid < format('(%s,0)', $6 + $10)::tid AND expires_at < $1 \
                           AND NOT COALESCE(delivery IN ('failed', 'dropped') AND finished_at >= $3, false) \
                         LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING ",
                    row_event_columns!(),
                    ", prior_events), ca AS (",
                    archive_events!("AND ($4::timestamptz IS NULL OR at >= $4)", row_events_as_audit!("c")),
                    "), \
                     p AS (SELECT ctid, prior_events FROM challenges WHERE ctid >= format('(%s,0)', $6)::tid \
                           AND ctid < format('(%s,0)', $6 + $10)::tid AND prior_events IS NOT NULL \
                           AND NOT (expires_at < $1 \
                             AND NOT COALESCE(delivery IN ('failed', 'dropped') AND finished_at >= $3, false)) \
                         LIMIT $5 FOR UPDATE SKIP LOCKED), \
                     pu AS (UPDATE challenges SET prior_events = NULL WHERE ctid = ANY(ARRAY(SELECT ctid FROM p)) \
                         RETURNING 1), \
                     pa AS (",
                    archive_events!("AND ($4::timestamptz IS NULL OR at >= $4)", prior_events_as_audit!("p")),
                    "), \
                     ac AS (DELETE FROM authorization_codes WHERE ctid = ANY(ARRAY( \
                         SELECT ctid FROM authorization_codes WHERE ctid >= format('(%s,0)', $7)::tid \
                           AND ctid < format('(%s,0)', $7 + $10)::tid AND expires_at < $2 \
                         LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                     rt AS (DELETE FROM refresh_tokens WHERE ctid = ANY(ARRAY( \
                         SELECT ctid FROM refresh_tokens WHERE ctid >= format('(%s,0)', $8)::tid \
                           AND ctid < format('(%s,0)', $8 + $10)::tid AND expires_at < $2 \
                         LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                     o AS (DELETE FROM outbox WHERE ctid = ANY(ARRAY( \
                         SELECT ctid FROM outbox WHERE ctid >= format('(%s,0)', $9)::tid \
                           AND ctid < format('(%s,0)', $9 + $10)::tid \
                           AND status IN ('failed', 'dropped') AND finished_at < $3 \
                         LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                     ot AS (DELETE FROM opaque_tokens WHERE token_hash = ANY(ARRAY( \
                         SELECT token_hash FROM opaque_tokens WHERE expires_at < $2 \
                         ORDER BY expires_at LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                     a AS (DELETE FROM audit_events WHERE id = ANY(ARRAY( \
                         SELECT id FROM audit_events WHERE $4::timestamptz IS NOT NULL AND at < $4 \
                         ORDER BY at LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1) \
                     SELECT (SELECT count(*) FROM c) AS challenges, (SELECT count(*) FROM pu) AS emptied, (SELECT count(*) FROM ac) AS codes, \
                            (SELECT count(*) FROM ot) AS opaque, (SELECT count(*) FROM rt) AS refresh, \
                            (SELECT count(*) FROM o) AS outbox, (SELECT count(*) FROM a) AS audit, \
                            pg_relation_size('challenges') / current_setting('block_size')::bigint AS challenges_pages, \
                            pg_relation_size('authorization_codes') / current_setting('block_size')::bigint AS codes_pages, \
                            pg_relation_size('refresh_tokens') / current_setting('block_size')::bigint AS refresh_pages, \
                            pg_relation_size('outbox') / current_setting('block_size')::bigint AS outbox_pages",
                ))
                .bind::<Timestamptz, _>(cutoffs.challenges)
                .bind::<Timestamptz, _>(cutoffs.grants)
                .bind::<Timestamptz, _>(cutoffs.outbox)
                .bind::<Nullable<Timestamptz>, _>(cutoffs.audit)
                .bind::<BigInt, _>(batch)
                .bind::<BigInt, _>(from[0])
                .bind::<BigInt, _>(from[1])
                .bind::<BigInt, _>(from[2])
                .bind::<BigInt, _>(from[3])
                .bind::<BigInt, _>(pages)
                .get_result(conn)
                .await?;
                Ok(Some(d))
            })
            .await
            .map_err(db_err("sweeping expired rows"))?;
        let Some(d) = deleted else { return Ok(None) };
        let walked = [
            advance(&at.challenges, from[0], pages, d.challenges.max(d.emptied), batch, d.challenges_pages),
            advance(&at.codes, from[1], pages, d.codes, batch, d.codes_pages),
            advance(&at.refresh, from[2], pages, d.refresh, batch, d.refresh_pages),
            advance(&at.outbox, from[3], pages, d.outbox, batch, d.outbox_pages),
        ];
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Some(Swept {
            challenges: n(d.challenges),
            grants: n(d.codes) + n(d.opaque) + n(d.refresh),
            outbox: n(d.outbox),
            audit: n(d.audit),
            more: walked.contains(&true) || d.opaque >= batch || d.audit >= batch,
        }))
    }
}
