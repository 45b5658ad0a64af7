use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use sesame_domain::{ConnectionName, Identifier, User, UserId};
use sesame_ports::{StoreError, UserStore};
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
        })
    }
}

/// The columns `UserRow` reads, for `concat!`.
macro_rules! user_columns {
    () => {
        "user_id, connection, identifier_kind, identifier, email_verified, phone_verified, created_at, updated_at, \
         last_login, logins_count"
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
        // others update the row it made.
        let row: UserRow = prepared!(concat!(
            "INSERT INTO users (user_id, connection, identifier_kind, identifier, email_verified, phone_verified, \
               created_at, updated_at, last_login, logins_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, 1) \
             ON CONFLICT (connection, identifier) DO UPDATE SET \
               logins_count = users.logins_count + 1, last_login = EXCLUDED.last_login, \
               updated_at = EXCLUDED.updated_at, \
               email_verified = users.email_verified OR EXCLUDED.email_verified, \
               phone_verified = users.phone_verified OR EXCLUDED.phone_verified \
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
}
