//! Black-box integration tests: the real server on a free port, a real HTTP
//! client, one module per surface (GUIDE.md point 20).
//!
//! Every test starts its own `TestServer`, so tests run in parallel without
//! sharing state, and every wait is bounded so a broken server fails a test
//! instead of hanging the suite.

mod browser;
mod call_bounds;
mod calls;
mod client_events;
mod common;
mod control;
mod drain;
mod filters;
mod helper_library;
mod isolation;
mod metrics;
mod ordering;
mod poll;
mod process;
mod publish;
mod remote;
mod replay;
mod signed_urls;
mod sse;
mod webhooks;
mod ws;
