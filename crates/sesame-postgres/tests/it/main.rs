//! The Postgres adapter against the port contracts and its own guarantees, on a real server.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

mod contract;
mod flow_scan;
mod migrations;
mod statements;
mod tls;
