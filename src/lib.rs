//! Switchboard: a real-time telephony event router.
//!
//! Call routers publish events over HTTP ([`http::publish`]); broker shards partition
//! them by call ([`actors::shard`]); event proxies hold client subscriptions with type,
//! parameter and scope filters ([`actors::proxy`], [`filter`]); clients receive them
//! over one streaming HTTP connection authorised by a signed URL ([`auth`],
//! [`http::stream`]). `docs/api.md` is the public API; the rest of `docs/` explains the choices.

#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod account;
pub mod actors;
pub mod auth;
pub mod callrouter;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod cursor;
pub mod egress;
pub mod event;
pub mod filter;
pub mod grant;
pub mod hash;
pub mod http;
pub mod limits;
pub mod loadtest;
pub mod metrics;
pub mod outbox;
pub mod publisher;
pub mod retention;
pub mod server;
pub mod store;
pub mod tail;
pub mod twiml;
pub mod webhook;
pub mod wire;

pub use config::Config;
pub use server::{serve, ServeError};
