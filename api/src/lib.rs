//! Steadfast's API: GraphQL queries, mutations and live subscriptions ([`graphql`]), the REST
//! endpoints devices and load balancers expect ([`rest`]), and the process that serves them,
//! optionally with the worker pools embedded ([`server`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod forwarded;
pub mod graphql;
pub mod http_metrics;
pub mod hub;
pub mod rest;
pub mod rest_operations;
pub mod revocation;
pub mod server;
pub mod state;
mod ws;

pub use config::ApiConfig;
pub use server::{Running, StartError, start};
pub use ws::CLOSE_TOKEN_EXPIRED;
