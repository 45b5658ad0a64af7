use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;
use sesame_domain::{ClientId, SecretHash, UserId};
use sesame_ports::{
    AuditEvent, AuditLog, AuthorizationCode, GrantStore, KeyState, KeyStore, OpaqueToken, RefreshOutcome, RefreshToken,
    SigningKeyRecord, StoreError,
};
use time::OffsetDateTime;

use crate::clients::{from_name, to_name};
use crate::prepared::{Prepared, prepared};
use crate::{PgStore, db_err};

fn hash(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    SecretHash::from_slice(bytes).map_err(|e| StoreError::Unexpected(anyhow::anyhow!("hash column: {e}")))
}

#[derive(QueryableByName)]
struct CodeRow {
    #[diesel(sql_type = Bytea)]
    code_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    redirect_uri: String,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Nullable<Text>)]
    audience: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    nonce: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    code_challenge: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
}

#[derive(QueryableByName)]
struct OpaqueRow {
    #[diesel(sql_type = Bytea)]
    token_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
}

#[derive(QueryableByName)]
struct RefreshRow {
    #[diesel(sql_type = Bytea)]
    token_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    family_id: String,
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Nullable<Text>)]
    audience: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: OffsetDateTime,
    #[diesel(sql_type = Bool)]
    spent: bool,
    #[diesel(sql_type = Bool)]
    revoked: bool,
}

#[async_trait]
impl GrantStore for PgStore {
    async fn save_code(&self, c: AuthorizationCode) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        prepared!(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, audience, nonce, \
             code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind::<Bytea, _>(c.code_hash.0.to_vec())
        .bind::<Text, _>(c.client_id.as_str())
        .bind::<Text, _>(&c.user_id.0)
        .bind::<Text, _>(&c.redirect_uri)
        .bind::<Text, _>(&c.scope)
        .bind::<Nullable<Text>, _>(c.audience)
        .bind::<Nullable<Text>, _>(c.nonce)
        .bind::<Nullable<Text>, _>(c.code_challenge)
        .bind::<Timestamptz, _>(c.expires_at)
        .execute(&mut conn)
        .await
        .map_err(db_err("saving an authorization code"))?;
        Ok(())
    }

    async fn take_code(&self, h: &SecretHash, now: OffsetDateTime) -> Result<Option<AuthorizationCode>, StoreError> {
        let mut conn = self.conn().await?;
        // DELETE … RETURNING: of concurrent takes, only the one that deletes the row gets it.
        let rows: Vec<CodeRow> = prepared!(
            "DELETE FROM authorization_codes WHERE code_hash = $1 RETURNING code_hash, client_id, user_id, \
             redirect_uri, scope, audience, nonce, code_challenge, expires_at",
        )
        .bind::<Bytea, _>(h.0.to_vec())
        .load(&mut conn)
        .await
        .map_err(db_err("taking an authorization code"))?;
        rows.into_iter()
            .next()
            .filter(|r| r.expires_at > now)
            .map(|r| {
                Ok(AuthorizationCode {
                    code_hash: hash(&r.code_hash)?,
                    client_id: ClientId::new(r.client_id),
                    user_id: UserId(r.user_id),
                    redirect_uri: r.redirect_uri,
                    scope: r.scope,
                    audience: r.audience,
                    nonce: r.nonce,
                    code_challenge: r.code_challenge,
                    expires_at: r.expires_at,
                })
            })
            .transpose()
    }

    async fn save_opaque(&self, t: OpaqueToken) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        prepared!(
            "INSERT INTO opaque_tokens (token_hash, client_id, user_id, scope, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Bytea, _>(t.token_hash.0.to_vec())
        .bind::<Text, _>(t.client_id.as_str())
        .bind::<Text, _>(&t.user_id.0)
        .bind::<Text, _>(&t.scope)
        .bind::<Timestamptz, _>(t.expires_at)
        .execute(&mut conn)
        .await
        .map_err(db_err("saving an access token"))?;
        Ok(())
    }

    async fn find_opaque(&self, h: &SecretHash, now: OffsetDateTime) -> Result<Option<OpaqueToken>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<OpaqueRow> = prepared!(
            "SELECT token_hash, client_id, user_id, scope, expires_at FROM opaque_tokens \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind::<Bytea, _>(h.0.to_vec())
        .bind::<Timestamptz, _>(now)
        .load(&mut conn)
        .await
        .map_err(db_err("finding an access token"))?;
        rows.into_iter()
            .next()
            .map(|r| {
                Ok(OpaqueToken {
                    token_hash: hash(&r.token_hash)?,
                    client_id: ClientId::new(r.client_id),
                    user_id: UserId(r.user_id),
                    scope: r.scope,
                    expires_at: r.expires_at,
                })
            })
            .transpose()
    }

    async fn save_refresh(&self, t: RefreshToken) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        prepared!(
            "WITH family AS (INSERT INTO refresh_families (family_id) VALUES ($2) ON CONFLICT DO NOTHING) \
             INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, audience, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind::<Bytea, _>(t.token_hash.0.to_vec())
        .bind::<Text, _>(&t.family_id)
        .bind::<Text, _>(t.client_id.as_str())
        .bind::<Text, _>(&t.user_id.0)
        .bind::<Text, _>(&t.scope)
        .bind::<Nullable<Text>, _>(t.audience)
        .bind::<Timestamptz, _>(t.expires_at)
        .execute(&mut conn)
        .await
        .map_err(db_err("saving a refresh token"))?;
        Ok(())
    }

    async fn revoke_refresh(&self, client: &ClientId, presented: &SecretHash) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n = prepared!(
            "UPDATE refresh_families f SET revoked_at = now() FROM refresh_tokens t \
             WHERE t.token_hash = $1 AND t.client_id = $2 AND f.family_id = t.family_id AND f.revoked_at IS NULL"
        )
        .bind::<Bytea, _>(presented.0.to_vec())
        .bind::<Text, _>(client.as_str())
        .execute(&mut conn)
        .await
        .map_err(db_err("revoking a refresh token"))?;
        Ok(n > 0)
    }

    async fn rotate_refresh(
        &self,
        client: &ClientId,
        presented: &SecretHash,
        next_hash: SecretHash,
        next_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<RefreshOutcome, StoreError> {
        let presented = presented.0.to_vec();
        let client = client.as_str().to_owned();
        let mut conn = self.conn().await?;
        // One transaction with the presented row locked: two concurrent rotations of one token
        // cannot both succeed; the loser sees it spent and revokes the family.
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            let rows: Vec<RefreshRow> = prepared!(
                "SELECT t.token_hash, t.family_id, t.client_id, t.user_id, t.scope, t.audience, t.expires_at, \
                       t.spent, (f.revoked_at IS NOT NULL) AS revoked \
                     FROM refresh_tokens t JOIN refresh_families f USING (family_id) \
                     WHERE t.token_hash = $1 FOR UPDATE OF t, f",
            )
            .bind::<Bytea, _>(&presented)
            .load(conn)
            .await?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(Err(RefreshOutcome::Invalid));
            };
            if row.client_id != client || row.revoked || row.expires_at <= now {
                return Ok(Err(RefreshOutcome::Invalid));
            }
            if row.spent {
                prepared!("UPDATE refresh_families SET revoked_at = $2 WHERE family_id = $1")
                    .bind::<Text, _>(&row.family_id)
                    .bind::<Timestamptz, _>(now)
                    .execute(conn)
                    .await?;
                return Ok(Err(RefreshOutcome::Reused));
            }
            prepared!("UPDATE refresh_tokens SET spent = true WHERE token_hash = $1")
                .bind::<Bytea, _>(&presented)
                .execute(conn)
                .await?;
            prepared!(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scope, audience, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind::<Bytea, _>(next_hash.0.to_vec())
            .bind::<Text, _>(&row.family_id)
            .bind::<Text, _>(&row.client_id)
            .bind::<Text, _>(&row.user_id)
            .bind::<Text, _>(&row.scope)
            .bind::<Nullable<Text>, _>(row.audience.clone())
            .bind::<Timestamptz, _>(next_expires_at.min(row.expires_at))
            .execute(conn)
            .await?;
            Ok(Ok(row))
        })
        .await
        .map_err(db_err("rotating a refresh token"))?
        .map_or_else(Ok, |row| {
            Ok(RefreshOutcome::Rotated(RefreshToken {
                token_hash: hash(&row.token_hash)?,
                family_id: row.family_id,
                client_id: ClientId::new(row.client_id),
                user_id: UserId(row.user_id),
                scope: row.scope,
                audience: row.audience,
                expires_at: row.expires_at,
            }))
        })
    }
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    kid: String,
    #[diesel(sql_type = Text)]
    alg: String,
    #[diesel(sql_type = Bytea)]
    private_key: Vec<u8>,
    #[diesel(sql_type = Jsonb)]
    public_jwk: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    retire_at: Option<OffsetDateTime>,
}

impl KeyRow {
    fn into_record(self) -> Result<SigningKeyRecord, StoreError> {
        let state = match (self.state.as_str(), self.retire_at) {
            ("active", _) => KeyState::Active,
            ("retiring", Some(until)) => KeyState::Retiring { until },
            ("retired", _) => KeyState::Retired,
            (other, _) => return Err(StoreError::Unexpected(anyhow::anyhow!("bad key state {other:?}"))),
        };
        Ok(SigningKeyRecord {
            kid: self.kid,
            alg: self.alg,
            private_key: self.private_key,
            public_jwk: self.public_jwk,
            created_at: self.created_at,
            state,
        })
    }
}

/// The columns `KeyRow` reads, for `concat!`.
macro_rules! key_columns {
    () => {
        "kid, alg, private_key, public_jwk, created_at, state, retire_at"
    };
}

#[async_trait]
impl KeyStore for PgStore {
    async fn active(&self) -> Result<Option<SigningKeyRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> =
            prepared!(concat!("SELECT ", key_columns!(), " FROM signing_keys WHERE state = 'active'"))
                .load(&mut conn)
                .await
                .map_err(db_err("reading the active key"))?;
        rows.into_iter().next().map(KeyRow::into_record).transpose()
    }

    async fn published(&self, now: OffsetDateTime) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = prepared!(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys WHERE state = 'active' OR (state = 'retiring' AND retire_at > $1) \
             ORDER BY created_at DESC"
        ))
        .bind::<Timestamptz, _>(now)
        .load(&mut conn)
        .await
        .map_err(db_err("reading published keys"))?;
        rows.into_iter().map(KeyRow::into_record).collect()
    }

    async fn activate(&self, key: SigningKeyRecord, retire_until: OffsetDateTime) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
            prepared!("UPDATE signing_keys SET state = 'retiring', retire_at = $1 WHERE state = 'active'")
                .bind::<Timestamptz, _>(retire_until)
                .execute(conn)
                .await?;
            prepared!(concat!(
                "INSERT INTO signing_keys (",
                key_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, 'active', NULL)"
            ))
            .bind::<Text, _>(&key.kid)
            .bind::<Text, _>(&key.alg)
            .bind::<Bytea, _>(&key.private_key)
            .bind::<Jsonb, _>(&key.public_jwk)
            .bind::<Timestamptz, _>(key.created_at)
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
        .map_err(db_err("activating a signing key"))
    }

    async fn retire(&self, kid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n = prepared!("UPDATE signing_keys SET state = 'retired' WHERE kid = $1 AND state <> 'active'")
            .bind::<Text, _>(kid)
            .execute(&mut conn)
            .await
            .map_err(db_err("retiring a signing key"))?;
        Ok(n > 0)
    }
}

#[derive(QueryableByName)]
struct AuditRow {
    #[diesel(sql_type = Timestamptz)]
    at: OffsetDateTime,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    client_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    connection: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    identifier: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    user_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
}

/// Appends an audit event's eight values (at, kind, client_id, connection, identifier, user_id,
/// ip, detail) to `query`'s binds.
pub(crate) fn bind_audit<S>(query: Prepared<'_, S>, e: AuditEvent) -> Prepared<'_, S> {
    query
        .bind::<Timestamptz, _>(e.at)
        .bind::<Text, _>(to_name(&e.kind))
        .bind::<Nullable<Text>, _>(e.client_id)
        .bind::<Nullable<Text>, _>(e.connection)
        .bind::<Nullable<Text>, _>(e.identifier)
        .bind::<Nullable<Text>, _>(e.user_id)
        .bind::<Nullable<Text>, _>(e.ip)
        .bind::<Nullable<Text>, _>(e.detail)
}

#[async_trait]
impl AuditLog for PgStore {
    async fn record(&self, e: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let query = prepared!(
            "INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        bind_audit(query, e).execute(&mut conn).await.map_err(db_err("recording an audit event"))?;
        Ok(())
    }

    async fn record_many(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len();
        let (mut at, mut kind, mut client_id, mut connection) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut identifier, mut user_id, mut ip, mut detail) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for e in events {
            at.push(e.at);
            kind.push(to_name(&e.kind));
            client_id.push(e.client_id);
            connection.push(e.connection);
            identifier.push(e.identifier);
            user_id.push(e.user_id);
            ip.push(e.ip);
            detail.push(e.detail);
        }
        let mut conn = self.conn().await?;
        // One statement for the batch; `unnest` keeps the order, so ids follow it.
        prepared!(
            "INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[])",
        )
        .bind::<Array<Timestamptz>, _>(at)
        .bind::<Array<Text>, _>(kind)
        .bind::<Array<Nullable<Text>>, _>(client_id)
        .bind::<Array<Nullable<Text>>, _>(connection)
        .bind::<Array<Nullable<Text>>, _>(identifier)
        .bind::<Array<Nullable<Text>>, _>(user_id)
        .bind::<Array<Nullable<Text>>, _>(ip)
        .bind::<Array<Nullable<Text>>, _>(detail)
        .execute(&mut conn)
        .await
        .map_err(db_err("recording audit events"))?;
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = prepared!(
            // A start's `code_link_sent` lives on its challenge row, and so do those of the
            // starts the row replaced, until retention moves them (see `challenges::START`): all
            // are read, newest first. The challenges are scanned (no index on the event's time:
            // it would cost every start); this listing is an operator's, not a request's.
            concat!(
                "SELECT at, kind, client_id, connection, identifier, user_id, ip, detail FROM ( \
                   (SELECT at, kind, client_id, connection, identifier, user_id, ip, detail, id FROM audit_events \
                    ORDER BY at DESC, id DESC LIMIT $1) \
                   UNION ALL (SELECT at, kind, client_id, connection, identifier, user_id, ip, detail, NULL::bigint \
                     FROM (",
                row_events_as_audit!("challenges"),
                ") r ORDER BY at DESC LIMIT $1)) e \
                 ORDER BY at DESC, id DESC NULLS FIRST LIMIT $1"
            ),
        )
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .load(&mut conn)
        .await
        .map_err(db_err("reading audit events"))?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }

    async fn for_user(&self, user_id: &str, page: u64, per_page: u64) -> Result<(Vec<AuditEvent>, u64), StoreError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = prepared!(
            "SELECT at, kind, client_id, connection, identifier, user_id, ip, detail FROM audit_events \
             WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind::<Text, _>(user_id)
        .bind::<BigInt, _>(i64::try_from(per_page).unwrap_or(i64::MAX))
        .bind::<BigInt, _>(i64::try_from(page.saturating_mul(per_page)).unwrap_or(i64::MAX))
        .load(&mut conn)
        .await
        .map_err(db_err("reading a user's audit events"))?;
        let count: Count = prepared!("SELECT count(*) AS n FROM audit_events WHERE user_id = $1")
            .bind::<Text, _>(user_id)
            .get_result(&mut conn)
            .await
            .map_err(db_err("counting a user's audit events"))?;
        let events = rows.into_iter().map(AuditRow::into_event).collect::<Result<_, _>>()?;
        Ok((events, u64::try_from(count.n).unwrap_or(0)))
    }
}

impl AuditRow {
    fn into_event(self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            at: self.at,
            kind: from_name(&self.kind)?,
            client_id: self.client_id,
            connection: self.connection,
            identifier: self.identifier,
            user_id: self.user_id,
            ip: self.ip,
            detail: self.detail,
        })
    }
}
