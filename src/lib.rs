//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.

pub mod access;
pub mod acl;
pub mod auth;
pub mod config;
pub mod http;
