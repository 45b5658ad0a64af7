//! The HTTP API over real HTTP: each test starts its own Sesame on port 0.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]
mod assertions;
mod cli;
mod helpers;
mod limits;
mod links;
mod login;
mod outage;
mod start_errors;
mod token_errors;
mod web;
