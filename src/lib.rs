//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.

pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod stats;
