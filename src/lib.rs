//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.
//!
//! # Life of a request
//! `server` accepts a connection (over the connection cap: 503) and spawns `conn::serve`,
//! which reads a request head (`http::io`, under the header timeout), refuses loops
//! (`Via`), then hands CONNECT to `connect` (resolve, check, connect, 200, `tunnel`
//! relay) and everything else to `forward` (pooled or fresh origin connection from
//! `upstream`, rewritten head, streamed bodies, 101 upgrades relayed). Errors come back
//! to `conn`, the one place that answers them; each exchange is recorded, then the
//! connection waits for the next request or closes.
//!
//! Dependencies point one way: `config`, `error`, `http` at the bottom; `upstream` and
//! `tunnel` above them; `context`, `connect`, `forward`; then `conn`, then `server`.

pub mod access;
pub mod acl;
pub mod auth;
pub mod cache;
pub mod config;
pub mod conn;
pub mod connect;
pub mod context;
pub mod error;
pub mod files;
pub mod forward;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod tunnel;
pub mod upstream;
