//! Black-box integration tests: the real server on a free port, a real HTTP
//! client, one module per surface.
//!
//! Every test starts its own `TestServer`, so tests run in parallel without
//! sharing state, and every wait is bounded so a broken server fails a test
//! instead of hanging the suite.

mod aggregation;
mod browser;
mod byte_caps;
mod call_bounds;
mod call_records;
mod calls;
mod client_events;
mod cluster;
mod common;
mod console;
mod control;
mod drain;
mod durability;
mod earliest;
mod egress;
mod examples;
mod filters;
mod grants;
mod helper_library;
mod isolation;
mod lane;
mod limits;
mod loadtest;
mod loadtest_config;
mod log_secrets;
mod metrics;
mod ordering;
mod poll;
mod process;
mod publish;
mod remote;
mod replay;
mod scaling;
mod security_doc;
mod signature_and_expiry;
mod signed_control;
mod signed_urls;
mod signing_endpoint;
mod sse;
mod subscribe_async;
mod tail;
mod topology;
mod webhooks;
mod ws;
mod ws_frames;
