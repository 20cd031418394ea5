//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.
//!
//! # Life of a request
//! `server` accepts a connection (over the connection cap: 503) and spawns `conn::serve`
//! in its own panic-isolated task. `conn` reads a request head (`http::io`, under the
//! header timeout), refuses loops (`Via`), then admits it: client address, credentials
//! (`auth`, 407), host name and CONNECT port (`acl`, 403), with one version of the rules
//! from `access`. CONNECT goes to `connect` (resolve, check the addresses, connect, 200,
//! `tunnel` relay); everything else to `forward`, which asks the `cache` first (a hit is
//! answered from memory), then sends the rewritten head and streamed body on a pooled or
//! fresh origin connection from `upstream` and streams the response back (teed into the
//! cache when it may be stored; 101 upgrades become a relay). Errors come back to `conn`,
//! the one place that answers them; each exchange becomes one access-log record
//! (`logging`) and counts in `stats` (read by `metrics`); then the connection waits for
//! the next request or closes.
//!
//! Dependencies point one way: `files`, `stats`, `tunnel` at the bottom; `acl`, `auth`,
//! `logging` on them; `error`, `access`, `metrics`; `http`; `cache`, `upstream`;
//! `config`; `context`; `connect`; `forward`; then `conn`, then `server`.

pub mod access;
pub mod acl;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod context;
pub mod error;
pub mod files;
pub mod http;
pub mod http_proxy;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod target;
pub mod tunnel;
pub mod upstream;
