use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use sesame_domain::{
    ConnectionName, Identifier, METADATA_MAX_BYTES, MetadataPatch, Profile, User, UserFilter, UserId, UserPatch,
};
use sesame_ports::{StoreError, UserPage, UserStore};
use time::OffsetDateTime;

use crate::challenges::{identifier_from, identifier_parts};
use crate::prepared::prepared;
use crate::{PgStore, db_err};

#[derive(QueryableByName)]
pub(crate) struct UserRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    connection: String,
    #[diesel(sql_type = Text)]
    identifier_kind: String,
    #[diesel(sql_type = Text)]
    identifier: String,
    #[diesel(sql_type = Bool)]
    email_verified: bool,
    #[diesel(sql_type = Bool)]
    phone_verified: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = Timestamptz)]
    updated_at: OffsetDateTime,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_login: Option<OffsetDateTime>,
    #[diesel(sql_type = BigInt)]
    logins_count: i64,
    #[diesel(sql_type = Bool)]
    blocked: bool,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    nickname: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    picture: Option<String>,
    #[diesel(sql_type = Jsonb)]
    user_metadata: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    app_metadata: serde_json::Value,
}

fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            id: UserId(self.user_id),
            connection: ConnectionName::new(self.connection),
            identifier: identifier_from(&self.identifier_kind, &self.identifier)?,
            email_verified: self.email_verified,
            phone_verified: self.phone_verified,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_login: self.last_login,
            logins_count: u64::try_from(self.logins_count).unwrap_or(0),
            blocked: self.blocked,
            profile: Profile { name: self.name, nickname: self.nickname, picture: self.picture },
            user_metadata: object(self.user_metadata),
            app_metadata: object(self.app_metadata),
        })
    }
}

/// The columns `UserRow` reads, for `concat!`.
macro_rules! user_columns {
    () => {
        "user_id, connection, identifier_kind, identifier, email_verified, phone_verified, created_at, updated_at, \
         last_login, logins_count, blocked, name, nickname, picture, user_metadata, app_metadata"
    };
}

#[async_trait]
impl UserStore for PgStore {
    async fn record_login(
        &self,
        connection: &ConnectionName,
        identifier: &Identifier,
        new_id: UserId,
        now: OffsetDateTime,
    ) -> Result<User, StoreError> {
        let (kind, value) = identifier_parts(identifier);
        let mut conn = self.conn().await?;
        // Racing first logins meet on the (connection, identifier) key: one insert wins, the
        // others update the row it made. A blocked user's row is returned as it is (the flow
        // refuses the login), so a refused login is not counted.
        let row: UserRow = prepared!(concat!(
            "INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified, \
               created_at, updated_at, last_login, logins_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, 1) \
             ON CONFLICT (connection, identifier) DO UPDATE SET \
               logins_count = users.logins_count + CASE WHEN users.blocked THEN 0 ELSE 1 END, \
               last_login = CASE WHEN users.blocked THEN users.last_login ELSE EXCLUDED.last_login END, \
               updated_at = CASE WHEN users.blocked THEN users.updated_at ELSE EXCLUDED.updated_at END, \
               email_verified = users.email_verified OR (EXCLUDED.email_verified AND NOT users.blocked), \
               phone_verified = users.phone_verified OR (EXCLUDED.phone_verified AND NOT users.blocked) \
             RETURNING ",
            user_columns!()
        ))
        .bind::<Text, _>(&new_id.0)
        .bind::<Text, _>(connection.as_str())
        .bind::<Text, _>(kind)
        .bind::<Text, _>(value)
        .bind::<Bool, _>(kind == "email")
        .bind::<Bool, _>(kind == "phone")
        .bind::<Timestamptz, _>(now)
        .get_result(&mut conn)
        .await
        .map_err(db_err("recording a login"))?;
        row.into_user()
    }

    async fn find(&self, connection: &ConnectionName, identifier: &Identifier) -> Result<Option<User>, StoreError> {
        let (_, value) = identifier_parts(identifier);
        let mut conn = self.conn().await?;
        let rows: Vec<UserRow> =
            prepared!(concat!("SELECT ", user_columns!(), " FROM users WHERE connection = $1 AND identifier = $2"))
                .bind::<Text, _>(connection.as_str())
                .bind::<Text, _>(value)
                .load(&mut conn)
                .await
                .map_err(db_err("finding a user"))?;
        rows.into_iter().next().map(UserRow::into_user).transpose()
    }

    async fn find_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<UserRow> = prepared!(concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = $1"))
            .bind::<Text, _>(&id.0)
            .load(&mut conn)
            .await
            .map_err(db_err("finding a user"))?;
        rows.into_iter().next().map(UserRow::into_user).transpose()
    }

    async fn list(&self, filter: &UserFilter, page: u64, per_page: u64) -> Result<UserPage, StoreError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let limit = i64::try_from(per_page).unwrap_or(i64::MAX);
        let offset = i64::try_from(page.saturating_mul(per_page)).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        // One statement per filter: a shared `($1 IS NULL OR …)` statement would get a generic
        // plan once cached, and a lookup by address would walk the whole table.
        let (rows, count): (Vec<UserRow>, Count) = match filter {
            UserFilter::All => (
                prepared!(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users ORDER BY created_at, user_id LIMIT $1 OFFSET $2"
                ))
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(offset)
                .load(&mut conn)
                .await
                .map_err(db_err("listing users"))?,
                prepared!("SELECT count(*) AS n FROM users")
                    .get_result(&mut conn)
                    .await
                    .map_err(db_err("counting users"))?,
            ),
            UserFilter::Identifier(identifier) => {
                let value = identifier_parts(identifier).1;
                (
                    prepared!(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users WHERE identifier = $1 ORDER BY created_at, user_id LIMIT $2 OFFSET $3"
                    ))
                    .bind::<Text, _>(value)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(offset)
                    .load(&mut conn)
                    .await
                    .map_err(db_err("finding users by identifier"))?,
                    prepared!("SELECT count(*) AS n FROM users WHERE identifier = $1")
                        .bind::<Text, _>(value)
                        .get_result(&mut conn)
                        .await
                        .map_err(db_err("counting users"))?,
                )
            }
            UserFilter::Id(id) => (
                prepared!(concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = $1 LIMIT $2 OFFSET $3"))
                    .bind::<Text, _>(&id.0)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(offset)
                    .load(&mut conn)
                    .await
                    .map_err(db_err("finding a user"))?,
                prepared!("SELECT count(*) AS n FROM users WHERE user_id = $1")
                    .bind::<Text, _>(&id.0)
                    .get_result(&mut conn)
                    .await
                    .map_err(db_err("counting users"))?,
            ),
        };
        Ok(UserPage {
            users: rows.into_iter().map(UserRow::into_user).collect::<Result<_, _>>()?,
            total: u64::try_from(count.n).unwrap_or(0),
        })
    }

    async fn create(&self, user: &User) -> Result<(), StoreError> {
        let (kind, value) = identifier_parts(&user.identifier);
        let mut conn = self.conn().await?;
        prepared!(
            "INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified, \
               created_at, updated_at, last_login, logins_count, blocked, name, nickname, picture, user_metadata, \
               app_metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        )
        .bind::<Text, _>(&user.id.0)
        .bind::<Text, _>(user.connection.as_str())
        .bind::<Text, _>(kind)
        .bind::<Text, _>(value)
        .bind::<Bool, _>(user.email_verified)
        .bind::<Bool, _>(user.phone_verified)
        .bind::<Timestamptz, _>(user.created_at)
        .bind::<Timestamptz, _>(user.updated_at)
        .bind::<Nullable<Timestamptz>, _>(user.last_login)
        .bind::<BigInt, _>(i64::try_from(user.logins_count).unwrap_or(i64::MAX))
        .bind::<Bool, _>(user.blocked)
        .bind::<Nullable<Text>, _>(user.profile.name.as_deref())
        .bind::<Nullable<Text>, _>(user.profile.nickname.as_deref())
        .bind::<Nullable<Text>, _>(user.profile.picture.as_deref())
        .bind::<Jsonb, _>(serde_json::Value::Object(user.user_metadata.clone()))
        .bind::<Jsonb, _>(serde_json::Value::Object(user.app_metadata.clone()))
        .execute(&mut conn)
        .await
        .map_err(db_err("creating a user"))?;
        Ok(())
    }

    async fn update(&self, id: &UserId, patch: &UserPatch, now: OffsetDateTime) -> Result<Option<User>, StoreError> {
        /// (mode, keys to remove, object to merge): mode `keep`, `clear` or `merge`.
        fn metadata(m: Option<&MetadataPatch>) -> (&'static str, Vec<String>, serde_json::Value) {
            match m {
                None => ("keep", Vec::new(), serde_json::json!({})),
                Some(MetadataPatch::Clear) => ("clear", Vec::new(), serde_json::json!({})),
                Some(MetadataPatch::Merge { set, remove }) => {
                    ("merge", remove.clone(), serde_json::Value::Object(set.clone()))
                }
            }
        }
        let (um_mode, um_remove, um_set) = metadata(patch.user_metadata.as_ref());
        let (am_mode, am_remove, am_set) = metadata(patch.app_metadata.as_ref());
        let identifier = patch.identifier.as_ref().map(|i| identifier_parts(i).1.to_owned());
        let mut conn = self.conn().await?;
        // One statement: the row lock serialises concurrent patches, and each merges into
        // what the one before it left, so no key is lost.
        let rows: Vec<UserRow> = prepared!(concat!(
            "UPDATE users SET \
               blocked = COALESCE($2, blocked), \
               identifier = COALESCE($3, identifier), \
               email_verified = COALESCE($4, email_verified), \
               phone_verified = COALESCE($5, phone_verified), \
               name = CASE WHEN $6 THEN $7 ELSE name END, \
               nickname = CASE WHEN $8 THEN $9 ELSE nickname END, \
               picture = CASE WHEN $10 THEN $11 ELSE picture END, \
               user_metadata = CASE $12 WHEN 'clear' THEN '{}'::jsonb \
                 WHEN 'merge' THEN (user_metadata - $13::text[]) || $14 ELSE user_metadata END, \
               app_metadata = CASE $15 WHEN 'clear' THEN '{}'::jsonb \
                 WHEN 'merge' THEN (app_metadata - $16::text[]) || $17 ELSE app_metadata END, \
               updated_at = $18 \
             WHERE user_id = $1 \
               AND octet_length((CASE $12 WHEN 'clear' THEN '{}'::jsonb \
                 WHEN 'merge' THEN (user_metadata - $13::text[]) || $14 ELSE user_metadata END)::text) <= $19 \
               AND octet_length((CASE $15 WHEN 'clear' THEN '{}'::jsonb \
                 WHEN 'merge' THEN (app_metadata - $16::text[]) || $17 ELSE app_metadata END)::text) <= $19 \
             RETURNING ",
            user_columns!()
        ))
        .bind::<Text, _>(&id.0)
        .bind::<Nullable<Bool>, _>(patch.blocked)
        .bind::<Nullable<Text>, _>(identifier.as_deref())
        .bind::<Nullable<Bool>, _>(patch.email_verified)
        .bind::<Nullable<Bool>, _>(patch.phone_verified)
        .bind::<Bool, _>(patch.name.is_some())
        .bind::<Nullable<Text>, _>(patch.name.clone().flatten())
        .bind::<Bool, _>(patch.nickname.is_some())
        .bind::<Nullable<Text>, _>(patch.nickname.clone().flatten())
        .bind::<Bool, _>(patch.picture.is_some())
        .bind::<Nullable<Text>, _>(patch.picture.clone().flatten())
        .bind::<Text, _>(um_mode)
        .bind::<Array<Text>, _>(um_remove)
        .bind::<Jsonb, _>(um_set)
        .bind::<Text, _>(am_mode)
        .bind::<Array<Text>, _>(am_remove)
        .bind::<Jsonb, _>(am_set)
        .bind::<Timestamptz, _>(now)
        .bind::<Integer, _>(i32::try_from(METADATA_MAX_BYTES).unwrap_or(i32::MAX))
        .load(&mut conn)
        .await
        .map_err(db_err("updating a user"))?;
        match rows.into_iter().next() {
            Some(row) => row.into_user().map(Some),
            // No row: no such user, or the metadata would have grown too large.
            None => match self.find_by_id(id).await? {
                Some(_) => Err(StoreError::TooLarge("metadata".into())),
                None => Ok(None),
            },
        }
    }

    async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.conn().await?;
        // One statement, so one commit: every data-modifying CTE runs, whether or not the
        // final SELECT reads it. A refresh token's family goes with it. The start events on the
        // user's challenge rows, and those of the starts they replaced (no user id, a masked
        // identifier: what the log kept of a start before the row carried it), move to
        // `audit_events`, as when retention deletes a row.
        let row: Count = prepared!(concat!(
            "WITH u AS (DELETE FROM users WHERE user_id = $1 RETURNING connection, identifier), \
             c AS (DELETE FROM challenges ch USING u \
                   WHERE ch.connection = u.connection AND ch.identifier = u.identifier RETURNING ",
            row_event_columns!(),
            ", prior_events), ca AS (",
            archive_events!("", row_events_as_audit!("c")),
            "), \
             o AS (DELETE FROM outbox ob USING u WHERE ob.recipient = u.identifier), \
             t AS (DELETE FROM opaque_tokens WHERE user_id = $1), \
             a AS (DELETE FROM authorization_codes WHERE user_id = $1), \
             f AS (DELETE FROM refresh_families \
                   WHERE family_id IN (SELECT family_id FROM refresh_tokens WHERE user_id = $1)), \
             r AS (DELETE FROM refresh_tokens WHERE user_id = $1), \
             e AS (DELETE FROM audit_events WHERE user_id = $1) \
             SELECT count(*) AS n FROM u"
        ))
        .bind::<Text, _>(&id.0)
        .get_result(&mut conn)
        .await
        .map_err(db_err("deleting a user"))?;
        Ok(row.n > 0)
    }
}

/// What the one-statement OTP login answers: the user (when the code was right), or a
/// placeholder row with `accepted = false` and the challenge's tries (when it was wrong).
#[derive(QueryableByName)]
struct LoginRow {
    #[diesel(embed)]
    user: UserRow,
    #[diesel(sql_type = Bool)]
    accepted: bool,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

const MAX_ATTEMPTS: i32 = sesame_domain::CodePolicy::MAX_ATTEMPTS as i32;

fn proof_hash(proof: &sesame_domain::Proof) -> &sesame_domain::SecretHash {
    match proof {
        sesame_domain::Proof::Code(h) | sesame_domain::Proof::Link(h) => h,
    }
}

#[async_trait]
impl sesame_ports::LoginStore for PgStore {
    async fn check_and_login(&self, w: sesame_ports::LoginWrite) -> Result<sesame_ports::LoginOutcome, StoreError> {
        use sesame_ports::LoginOutcome;
        let (is_link, hash) = match &w.proof {
            sesame_domain::Proof::Code(h) => (false, h.0.to_vec()),
            sesame_domain::Proof::Link(h) => (true, h.0.to_vec()),
        };
        let (kind, identifier) = identifier_parts(&w.key.identifier);
        let token = w.access_token.as_ref();
        let mut conn = self.conn().await?;
        // One statement, one commit: the check counts the try and consumes on a match (as
        // `ChallengeStore::check`), the user is upserted from the consumed row only (as
        // `record_login`: a blocked user's row comes back unchanged), and the token and the
        // event are written only for a user who is not blocked. A wrong code answers a
        // placeholder row carrying the tries; no row at all means nothing live was touched.
        let query = prepared!(concat!(
            "WITH checked AS ( \
               UPDATE challenges SET \
                 attempts = attempts + CASE WHEN COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) \
                   THEN 0 ELSE 1 END, \
                 consumed_at = CASE WHEN COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) \
                   THEN $6 ELSE consumed_at END \
               WHERE client_id = $1 AND connection = $2 AND identifier = $3 \
                 AND consumed_at IS NULL AND expires_at > $6 AND attempts < $7 \
               RETURNING attempts, COALESCE((CASE WHEN $5 THEN link_hash ELSE code_hash END) = $4, false) AS matched), \
             login AS ( \
               INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified, \
                 created_at, updated_at, last_login, logins_count) \
               SELECT $8, $2, $9, $3, $9 = 'email', $9 = 'phone', $6, $6, $6, 1 FROM checked WHERE matched \
               ON CONFLICT (connection, identifier) DO UPDATE SET \
                 logins_count = users.logins_count + CASE WHEN users.blocked THEN 0 ELSE 1 END, \
                 last_login = CASE WHEN users.blocked THEN users.last_login ELSE EXCLUDED.last_login END, \
                 updated_at = CASE WHEN users.blocked THEN users.updated_at ELSE EXCLUDED.updated_at END, \
                 email_verified = users.email_verified OR (EXCLUDED.email_verified AND NOT users.blocked), \
                 phone_verified = users.phone_verified OR (EXCLUDED.phone_verified AND NOT users.blocked) \
               RETURNING ",
            user_columns!(),
            "), \
             token AS ( \
               INSERT INTO opaque_tokens (token_hash, client_id, user_id, scope, expires_at) \
               SELECT $10, $1, login.user_id, $11, $12 FROM login WHERE $10 IS NOT NULL AND NOT login.blocked \
               RETURNING 1), \
             audited AS ( \
               INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
               SELECT $13, $14, $15, $16, $17, COALESCE($18, login.user_id), $19, $20 FROM login WHERE NOT login.blocked \
               RETURNING 1) \
             SELECT ",
            user_columns!(),
            ", true AS accepted, 0 AS attempts FROM login \
             UNION ALL \
             SELECT '', '', '', '', false, false, $6, $6, NULL::timestamptz, 0::bigint, false, NULL::text, NULL::text, \
               NULL::text, '{}'::jsonb, '{}'::jsonb, false, attempts FROM checked WHERE NOT matched"
        ))
        .bind::<Text, _>(w.key.client_id.as_str())
        .bind::<Text, _>(w.key.connection.as_str())
        .bind::<Text, _>(identifier)
        .bind::<diesel::sql_types::Bytea, _>(hash)
        .bind::<Bool, _>(is_link)
        .bind::<Timestamptz, _>(w.now)
        .bind::<Integer, _>(MAX_ATTEMPTS)
        .bind::<Text, _>(&w.new_user_id.0)
        .bind::<Text, _>(kind)
        .bind::<Nullable<diesel::sql_types::Bytea>, _>(token.map(|t| t.token_hash.0.to_vec()))
        .bind::<Nullable<Text>, _>(token.map(|t| t.scope.clone()))
        .bind::<Nullable<Timestamptz>, _>(token.map(|t| t.expires_at));
        let rows: Vec<LoginRow> = crate::grants::bind_audit(query, w.event)
            .load(&mut conn)
            .await
            .map_err(db_err("checking a code and recording the login"))?;
        drop(conn);
        match rows.into_iter().next() {
            Some(row) if row.accepted => Ok(LoginOutcome::LoggedIn(Box::new(row.user.into_user()?))),
            Some(row) => Ok(LoginOutcome::Refused(sesame_domain::CheckOutcome::Wrong {
                attempts_left: u32::try_from(MAX_ATTEMPTS - row.attempts).unwrap_or(0),
            })),
            None => Ok(LoginOutcome::Refused(self.why_refused(&w.key, is_link, proof_hash(&w.proof), w.now).await?)),
        }
    }
}
