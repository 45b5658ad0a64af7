//! Retention: small batches, each its own short transaction, behind a transaction-scoped
//! advisory lock so that one replica sweeps at a time. Rows are picked by `ctid` with
//! `FOR UPDATE SKIP LOCKED`: a row a start or a check holds is left for a later batch, and the
//! sweep never waits for one (nor makes one wait longer than its own few-millisecond batch).

use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Nullable, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use sesame_ports::{Cutoffs, Retention, StoreError, Swept};

use crate::prepared::prepared;
use crate::{PgStore, db_err};

/// The advisory lock key of retention (any constant; `sesame` in ASCII).
pub const RETENTION_LOCK: i64 = 0x7365_7361_6d65;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Deleted {
    #[diesel(sql_type = BigInt)]
    challenges: i64,
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
}

#[async_trait]
impl Retention for PgStore {
    async fn sweep(&self, cutoffs: &Cutoffs, batch: usize) -> Result<Option<Swept>, StoreError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let cutoffs = *cutoffs;
        let mut conn = self.conn().await?;
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            let lock: Locked = prepared!("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<BigInt, _>(RETENTION_LOCK)
                .get_result(conn)
                .await?;
            if !lock.locked {
                return Ok(None);
            }
            // One statement: every kind, each limited to `batch` rows.
            let d: Deleted = prepared!(
                "WITH \
                 c AS (DELETE FROM challenges WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM challenges WHERE expires_at < $1 LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                 ac AS (DELETE FROM authorization_codes WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM authorization_codes WHERE expires_at < $2 LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                 ot AS (DELETE FROM opaque_tokens WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM opaque_tokens WHERE expires_at < $2 LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                 rt AS (DELETE FROM refresh_tokens WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM refresh_tokens WHERE expires_at < $2 LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                 o AS (DELETE FROM outbox WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM outbox WHERE status IN ('failed', 'dropped') AND finished_at < $3 \
                     LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1), \
                 a AS (DELETE FROM audit_events WHERE id = ANY(ARRAY( \
                     SELECT id FROM audit_events WHERE $4::timestamptz IS NOT NULL AND at < $4 \
                     ORDER BY at LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING 1) \
                 SELECT (SELECT count(*) FROM c) AS challenges, (SELECT count(*) FROM ac) AS codes, \
                        (SELECT count(*) FROM ot) AS opaque, (SELECT count(*) FROM rt) AS refresh, \
                        (SELECT count(*) FROM o) AS outbox, (SELECT count(*) FROM a) AS audit",
            )
            .bind::<Timestamptz, _>(cutoffs.challenges)
            .bind::<Timestamptz, _>(cutoffs.grants)
            .bind::<Timestamptz, _>(cutoffs.outbox)
            .bind::<Nullable<Timestamptz>, _>(cutoffs.audit)
            .bind::<BigInt, _>(batch)
            .get_result(conn)
            .await?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(Some(Swept {
                challenges: n(d.challenges),
                grants: n(d.codes) + n(d.opaque) + n(d.refresh),
                outbox: n(d.outbox),
                audit: n(d.audit),
            }))
        })
        .await
        .map_err(db_err("sweeping expired rows"))
    }
}
