//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.

pub mod cache;
pub mod config;
pub mod http;
