//! revgate: an API gateway that verifies JWT bearer tokens and refuses any whose `jti`,
//! session (`sid`) or subject (`sub`) has been revoked. Revocations come from OpenID
//! Connect Back-Channel Logout, an RFC 7009-style revoke endpoint and a local admin API,
//! and live in an embedded sled store that survives restarts and crashes.
//!
//! The binary (`main.rs`) parses the command line and hands it to [`cli::run`]; tests drive
//! [`Gateway::start`] directly with listeners bound to `127.0.0.1:0` and a temporary store.
#![forbid(unsafe_code)]

pub mod admin;
mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discover;
pub mod endpoints;
pub mod error;
pub mod health;
mod ids;
pub mod logline;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod server;
mod start;
pub mod store;
mod telemetry;
pub mod tls;

pub use app::{App, Snapshot};
pub use server::{run, Listeners};
pub use start::{Gateway, StartError};
