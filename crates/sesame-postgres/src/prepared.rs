//! Statements kept as prepared statements on each connection.
//!
//! `diesel::sql_query` is never cached (Diesel cannot know that its SQL is fixed), so every
//! call would be parsed and planned by Postgres after a round trip of its own. `prepared!(SQL)`
//! is `sql_query(SQL)` for a constant `SQL` that diesel-async keeps in its per-connection
//! statement cache, under a type of its own per call site (so a lookup hashes a `TypeId`, not
//! the SQL text). After the first use on a connection, a statement is one round trip (Bind,
//! Execute, Sync) with a cached plan.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// `sql_query($sql)` for a constant `$sql`, cached per connection under a type that only this
/// call site has.
macro_rules! prepared {
    ($sql:expr $(,)?) => {{
        const SQL: &str = $sql;
        /// This statement's key in the per-connection cache.
        struct Statement;
        $crate::prepared::Prepared::<Statement>::new(SQL)
    }};
}
pub(crate) use prepared;

/// A `sql_query` with fixed SQL, safe to cache as a prepared statement under `S`. Made only by
/// `prepared!`, which gives every statement its own `S`.
#[must_use]
pub(crate) struct Prepared<'f, S> {
    query: BoxedSqlQuery<'f, Pg, SqlQuery>,
    statement: PhantomData<S>,
}

impl<'f, S> Prepared<'f, S> {
    #[doc(hidden)]
    pub(crate) fn new(sql: &'static str) -> Self {
        Self { query: diesel::sql_query(sql).into_boxed(), statement: PhantomData }
    }

    /// As `SqlQuery::bind`.
    pub(crate) fn bind<ST, V>(self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        Self { query: self.query.bind::<ST, V>(value), statement: PhantomData }
    }
}

impl<S> QueryFragment<Pg> for Prepared<'_, S> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }

    /// The SQL is a constant (see `prepared!`) and binds never change it.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<S: 'static> QueryId for Prepared<'_, S> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S> Query for Prepared<'_, S> {
    type SqlType = Untyped;
}

impl<S> std::fmt::Debug for Prepared<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}
