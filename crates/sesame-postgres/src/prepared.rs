//! Statements kept as prepared statements on each connection.
//!
//! `diesel::sql_query` is never cached (Diesel cannot know that its SQL is fixed), so every
//! call would be parsed and planned by Postgres after a round trip of its own. Every statement
//! here is a `&'static str`, so caching is safe and bounded: `prepared(SQL)` is `sql_query(SQL)`
//! that diesel-async keeps in its per-connection statement cache (keyed by the SQL and the bind
//! types). After the first use on a connection, a statement is one round trip (Bind, Execute,
//! Sync) with a cached plan.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A `sql_query` with fixed SQL, safe to cache as a prepared statement.
#[must_use]
pub(crate) struct Prepared<'f>(BoxedSqlQuery<'f, Pg, SqlQuery>);

/// `sql_query(sql)`, cached per connection.
pub(crate) fn prepared<'f>(sql: &'static str) -> Prepared<'f> {
    Prepared(diesel::sql_query(sql).into_boxed())
}

impl<'f> Prepared<'f> {
    /// As `SqlQuery::bind`.
    pub(crate) fn bind<ST, V>(self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        Self(self.0.bind::<ST, V>(value))
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// The SQL is a `&'static str` (see `prepared`) and binds never change it.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl QueryId for Prepared<'_> {
    // No static id: the cache is keyed by the SQL text and the bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}
