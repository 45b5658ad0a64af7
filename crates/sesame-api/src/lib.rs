//! Sesame's HTTP API (actix-web): Auth0's passwordless Authentication API, configuration, and
//! the wiring of adapters at startup.

pub mod admin;
pub mod admin_users;
pub mod config;
pub mod errors;
pub mod hosted;
pub mod links;
pub mod management;
pub mod middleware;
pub mod monitoring;
pub mod openapi;
pub mod probes;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod wire;
