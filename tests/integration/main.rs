//! Black-box integration tests: the real server on a free port, a real HTTP
//! client, one module per surface (GUIDE.md point 20).
//!
//! Every test starts its own `TestServer`, so tests run in parallel without
//! sharing state, and every wait is bounded so a broken server fails a test
//! instead of hanging the suite.

mod common;
mod filters;
mod isolation;
mod metrics;
mod ordering;
mod process;
mod publish;
mod signed_urls;
mod sse;
