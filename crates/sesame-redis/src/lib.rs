//! Redis adapters for [`sesame_ports::RateLimiter`] and [`sesame_ports::ReplayGuard`]: the
//! limits every replica shares.
//!
//! # Rate limits: one atomic round trip
//!
//! All the rules of one [`check`](sesame_ports::RateLimiter::check) run in one Lua script
//! (`EVALSHA`, reloaded by [`redis::Script`] after a Redis restart): it reads every bucket,
//! and only if each one has room does it take from each, so the check is all or nothing and
//! concurrent replicas cannot overshoot. Buckets are GCRA cells, the same arithmetic as
//! `sesame-memory`'s limiter: emission interval `T = window / limit`, burst `limit`; a bucket
//! is stored as its theoretical arrival time and expires (`PX`) when it would be full again,
//! so idle keys leave Redis by themselves.
//!
//! The script uses the `now` the caller passes, never Redis's `TIME`, so a moved clock (tests,
//! the `Clock` port) behaves as in memory. Lua numbers are doubles, exact below 2^53: the
//! script therefore stores times as `seconds:nanoseconds` and only computes offsets from now,
//! which stay below a window. Windows longer than 2^53 ns (about 104 days) count as 104 days.
//!
//! # Replay guard
//!
//! [`first_use`](sesame_ports::ReplayGuard::first_use) is a second small script rather than
//! `SET NX PX`: it stores `until` and refuses only while `until` is after the caller's `now`,
//! so expiry follows the same clock as the rate limits. The entry also gets a Redis lifetime of
//! `until - now` (rounded up, at least 1 ms), after which Redis drops it by itself.
//!
//! # Keys and Redis Cluster
//!
//! With `key_prefix = "sesame:"`, a bucket is `{sesame:rl}:<rule key>` and a replay-guard
//! entry `sesame:jti:<key>`. A script may only touch keys of one hash slot in a cluster, and
//! the keys of one request (IP, identifier, client, country) have nothing in common, so the
//! hash tag is the caller-independent part `{<prefix>rl}`: every bucket lives in one slot.
//! That keeps each check one atomic round trip on a single node and on a cluster alike; the
//! cost is that the limiter's load is not spread over shards, which a few tens of thousands
//! of checks per second per node does not need. Replay-guard entries are single keys and carry
//! no tag, so they spread. The prefix may not contain `{` or `}`.
//!
//! With `[redis] cluster = true` the adapter speaks the cluster protocol (ElastiCache with
//! cluster mode enabled): `url` is the seed (the configuration endpoint), the slot map is
//! learnt from it, and TLS, the CA and the password of the seed apply to every node. Without
//! it, `url` is one server or a primary endpoint, as for ElastiCache with cluster mode off.
//!
//! # Failure
//!
//! Every Redis failure becomes a [`sesame_ports::LimitError`]; nothing panics. Each call,
//! connecting included, gives up after `timeout_ms` (250 ms by default), and the connection
//! is re-established by the next call after Redis comes back, without a restart. Whether a
//! failure lets a request through is the caller's choice (`fail = "open" | "closed"`).

mod config;
mod gcra;
mod limiter;
#[cfg(feature = "testing")]
#[allow(clippy::expect_used, clippy::panic, reason = "test tooling: a missing program must fail the test loudly")]
pub mod testing;

pub use config::RedisConfig;
pub use limiter::RedisLimiter;
