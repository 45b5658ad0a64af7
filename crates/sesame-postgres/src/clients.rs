use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{Array, Bool, Bytea, Integer, Jsonb, Nullable, Text};
use diesel_async::RunQueryDsl;
use sesame_domain::{Client, ClientId, CodePolicy, Connection, ConnectionName, GrantType, SecretHash, Strategy};
use sesame_ports::{ClientStore, ConnectionStore, StoreError};

use crate::prepared::prepared;
use crate::{PgStore, db_err};

#[derive(QueryableByName)]
struct ClientRow {
    #[diesel(sql_type = Text)]
    client_id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    app_type: String,
    #[diesel(sql_type = Text)]
    auth_method: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    secret_hash: Option<Vec<u8>>,
    #[diesel(sql_type = Array<Text>)]
    connections: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    callbacks: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    allowed_origins: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    grant_types: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    public_keys: Vec<String>,
    #[diesel(sql_type = Jsonb)]
    api_scopes: serde_json::Value,
    #[diesel(sql_type = Bool)]
    trust_forwarded_for: bool,
    #[diesel(sql_type = Array<Text>)]
    allowed_logout_urls: Vec<String>,
    #[diesel(sql_type = Bool)]
    require_pkce: bool,
}

/// A text column holding a serde enum's snake_case name.
pub(crate) fn from_name<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("unexpected value {name:?} in the database: {e}")))
}

pub(crate) fn to_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl ClientRow {
    fn into_client(self) -> Result<Client, StoreError> {
        Ok(Client {
            id: ClientId::new(self.client_id),
            name: self.name,
            app_type: from_name(&self.app_type)?,
            auth_method: from_name(&self.auth_method)?,
            secret_hash: self
                .secret_hash
                .map(|h| SecretHash::from_slice(&h))
                .transpose()
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("secret_hash: {e}")))?,
            connections: self.connections.into_iter().map(ConnectionName::new).collect(),
            callbacks: self.callbacks,
            allowed_origins: self.allowed_origins,
            grant_types: self
                .grant_types
                .iter()
                .map(|g| {
                    GrantType::parse(g)
                        .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("unknown grant type {g:?}")))
                })
                .collect::<Result<_, _>>()?,
            public_keys: self.public_keys,
            api_scopes: serde_json::from_value(self.api_scopes)
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("api_scopes: {e}")))?,
            trust_forwarded_for: self.trust_forwarded_for,
            allowed_logout_urls: self.allowed_logout_urls,
            require_pkce: self.require_pkce,
        })
    }
}

/// The columns `ClientRow` reads, for `concat!`.
macro_rules! client_columns {
    () => {
        "client_id, name, app_type, auth_method, secret_hash, connections, callbacks, allowed_origins, grant_types, \
         public_keys, api_scopes, trust_forwarded_for, allowed_logout_urls, require_pkce"
    };
}

#[async_trait]
impl ClientStore for PgStore {
    async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ClientRow> =
            prepared!(concat!("SELECT ", client_columns!(), " FROM clients WHERE client_id = $1"))
                .bind::<Text, _>(id.as_str())
                .load(&mut conn)
                .await
                .map_err(db_err("finding a client"))?;
        rows.into_iter().next().map(ClientRow::into_client).transpose()
    }

    async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = Bool)]
            found: bool,
        }
        let mut conn = self.conn().await?;
        let row: Found = prepared!("SELECT EXISTS (SELECT 1 FROM clients WHERE allowed_origins @> ARRAY[$1]) AS found")
            .bind::<Text, _>(origin)
            .get_result(&mut conn)
            .await
            .map_err(db_err("checking an origin"))?;
        Ok(row.found)
    }

    async fn list(&self) -> Result<Vec<Client>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ClientRow> = prepared!(concat!("SELECT ", client_columns!(), " FROM clients ORDER BY client_id"))
            .load(&mut conn)
            .await
            .map_err(db_err("listing clients"))?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    async fn save(&self, c: &Client) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        prepared!(
            "INSERT INTO clients (client_id, name, app_type, auth_method, secret_hash, connections, callbacks, \
             allowed_origins, grant_types, public_keys, api_scopes, trust_forwarded_for, allowed_logout_urls, require_pkce) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (client_id) DO UPDATE SET name = EXCLUDED.name, app_type = EXCLUDED.app_type, \
             auth_method = EXCLUDED.auth_method, secret_hash = EXCLUDED.secret_hash, \
             connections = EXCLUDED.connections, callbacks = EXCLUDED.callbacks, \
             allowed_origins = EXCLUDED.allowed_origins, grant_types = EXCLUDED.grant_types, \
             public_keys = EXCLUDED.public_keys, api_scopes = EXCLUDED.api_scopes, \
             trust_forwarded_for = EXCLUDED.trust_forwarded_for, \
             allowed_logout_urls = EXCLUDED.allowed_logout_urls, require_pkce = EXCLUDED.require_pkce, \
             updated_at = now()",
        )
        .bind::<Text, _>(c.id.as_str())
        .bind::<Text, _>(&c.name)
        .bind::<Text, _>(c.app_type.as_str())
        .bind::<Text, _>(c.auth_method.as_str())
        .bind::<Nullable<Bytea>, _>(c.secret_hash.map(|h| h.0.to_vec()))
        .bind::<Array<Text>, _>(c.connections.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(&c.callbacks)
        .bind::<Array<Text>, _>(&c.allowed_origins)
        .bind::<Array<Text>, _>(c.grant_types.iter().map(|g| g.as_str().to_owned()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(&c.public_keys)
        .bind::<Jsonb, _>(serde_json::to_value(&c.api_scopes).map_err(|e| StoreError::Unexpected(e.into()))?)
        .bind::<Bool, _>(c.trust_forwarded_for)
        .bind::<Array<Text>, _>(&c.allowed_logout_urls)
        .bind::<Bool, _>(c.require_pkce)
        .execute(&mut conn)
        .await
        .map_err(db_err("saving a client"))?;
        Ok(())
    }

    async fn delete(&self, id: &ClientId) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n = prepared!("DELETE FROM clients WHERE client_id = $1")
            .bind::<Text, _>(id.as_str())
            .execute(&mut conn)
            .await
            .map_err(db_err("deleting a client"))?;
        Ok(n > 0)
    }
}

#[derive(QueryableByName)]
struct ConnectionRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    strategy: String,
    #[diesel(sql_type = Integer)]
    code_length: i32,
    #[diesel(sql_type = Integer)]
    code_lifetime_secs: i32,
    #[diesel(sql_type = Bool)]
    disable_signup: bool,
    #[diesel(sql_type = Jsonb)]
    limits: serde_json::Value,
}

impl ConnectionRow {
    fn into_connection(self) -> Result<Connection, StoreError> {
        let strategy: Strategy = from_name(&self.strategy)?;
        let policy = CodePolicy::new(
            u32::try_from(self.code_length).unwrap_or(0),
            u64::try_from(self.code_lifetime_secs).unwrap_or(0),
        )
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("connection {}: {e}", self.name)))?;
        let limits = serde_json::from_value(self.limits)
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("connection {} limits: {e}", self.name)))?;
        Ok(Connection {
            name: ConnectionName::new(self.name),
            strategy,
            policy,
            disable_signup: self.disable_signup,
            limits,
        })
    }
}

#[async_trait]
impl ConnectionStore for PgStore {
    async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ConnectionRow> = prepared!(
            "SELECT name, strategy, code_length, code_lifetime_secs, disable_signup, limits FROM connections WHERE name = $1",
        )
        .bind::<Text, _>(name.as_str())
        .load(&mut conn)
        .await
        .map_err(db_err("finding a connection"))?;
        rows.into_iter().next().map(ConnectionRow::into_connection).transpose()
    }

    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ConnectionRow> = prepared!(
            "SELECT name, strategy, code_length, code_lifetime_secs, disable_signup, limits FROM connections ORDER BY name",
        )
        .load(&mut conn)
        .await
        .map_err(db_err("listing connections"))?;
        rows.into_iter().map(ConnectionRow::into_connection).collect()
    }

    async fn save(&self, c: &Connection) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        prepared!(
            "INSERT INTO connections (name, strategy, code_length, code_lifetime_secs, disable_signup, limits) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET strategy = EXCLUDED.strategy, \
             code_length = EXCLUDED.code_length, code_lifetime_secs = EXCLUDED.code_lifetime_secs, \
             disable_signup = EXCLUDED.disable_signup, limits = EXCLUDED.limits, updated_at = now()",
        )
        .bind::<Text, _>(c.name.as_str())
        .bind::<Text, _>(c.strategy.as_str())
        .bind::<Integer, _>(i32::try_from(c.policy.length()).unwrap_or(6))
        .bind::<Integer, _>(i32::try_from(c.policy.lifetime().as_secs()).unwrap_or(180))
        .bind::<Bool, _>(c.disable_signup)
        .bind::<Jsonb, _>(serde_json::to_value(&c.limits).map_err(|e| StoreError::Unexpected(e.into()))?)
        .execute(&mut conn)
        .await
        .map_err(db_err("saving a connection"))?;
        Ok(())
    }
}
