//! The HTTP API over real HTTP: each test starts its own Sesame on port 0.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]
mod assertions;
mod cli;
mod delivery;
mod faults;
mod helpers;
mod hosted;
mod keys;
mod limits;
mod links;
mod login;
mod logs;
mod management;
#[path = "../../../../tests/aws/moto.rs"]
#[allow(dead_code, reason = "shared with the adapter tests; not every helper is used here")]
mod moto;
mod ops;
mod outage;
mod security;
mod served;
mod shutdown;
mod start_errors;
mod token_errors;
mod web;
