//! The attack suite: each case is an attack on a running Sesame over real HTTP, as a stranger
//! would make it, and an assertion of the safe outcome. Every case runs twice: on the embedded
//! default (memory store and limiter) and on Postgres + Redis (a database and a key prefix of
//! its own). The server runs in this process on a real port with a manual clock (to cross
//! windows without waiting); nothing is called but its HTTP API.
//!
//! Categories: brute force, races, enumeration, normalisation, injection, tokens, redirects.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

#[allow(dead_code, reason = "the HTTP suite's helpers, shared; not every one is used here")]
#[path = "../../crates/sesame-api/tests/api/helpers.rs"]
mod helpers;

mod stack;

mod brute_force;
mod enumeration;
mod injection;
mod normalisation;
mod races;
mod redirects;
mod tokens;
