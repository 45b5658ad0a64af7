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
struct UserRow {
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
    fn into_user(self) -> Result<User, StoreError> {
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
        // final SELECT reads it. A refresh token's family goes with it.
        let row: Count = prepared!(
            "WITH u AS (DELETE FROM users WHERE user_id = $1 RETURNING connection, identifier), \
             c AS (DELETE FROM challenges ch USING u \
                   WHERE ch.connection = u.connection AND ch.identifier = u.identifier), \
             o AS (DELETE FROM outbox ob USING u WHERE ob.recipient = u.identifier), \
             t AS (DELETE FROM opaque_tokens WHERE user_id = $1), \
             a AS (DELETE FROM authorization_codes WHERE user_id = $1), \
             f AS (DELETE FROM refresh_families \
                   WHERE family_id IN (SELECT family_id FROM refresh_tokens WHERE user_id = $1)), \
             r AS (DELETE FROM refresh_tokens WHERE user_id = $1), \
             e AS (DELETE FROM audit_events WHERE user_id = $1) \
             SELECT count(*) AS n FROM u"
        )
        .bind::<Text, _>(&id.0)
        .get_result(&mut conn)
        .await
        .map_err(db_err("deleting a user"))?;
        Ok(row.n > 0)
    }
}
