//! proxy-server: a single-binary, asynchronous forward proxy for HTTP and HTTPS.
//!
//! # Life of a request
//! `server` accepts a connection on one of its listeners (over the connection cap: 503),
//! reads its PROXY header where the listener trusts the source (`proxy_protocol`) and
//! runs the TLS handshake on a TLS listener (`tls`), wraps it in a `client::ClientStream`
//! (over the one `stream::TcpOrTls`) that carries the client's address, and spawns the
//! listener's front end — `http_proxy::serve`, or `socks::serve` for SOCKS5 — in its own
//! panic-isolated task and tracing span. The front end reads its protocol (an HTTP
//! request head under the header timeout; a SOCKS5 negotiation), states the
//! `target::Target` and the credentials, and hands the exchange to the pipeline in `conn`:
//! `Context::admit` refuses an address blocked for failed logins (429), asks `access` for
//! the decision (client address, credentials via `auth` — 407 —, host and CONNECT port
//! via `acl` — 403 —, then the policy's ordered rules, first match wins) and applies the
//! user's `limits` (429; a bandwidth pacer for what follows). A tunnel goes through
//! `Context::tunnel`: a connection from the `upstream::Dialer` (the route: direct, or
//! through parent proxies with failover; resolve, check every address and settle any
//! rule that depended on them, connect), the front end's yes, then the `tunnel` relay.
//! A plain request asks the `cache` first (a hit is answered from memory), then sends the
//! rewritten head and streamed body on a pooled or fresh connection from the same dialer
//! and streams the response back (teed into the cache when it may be stored; 101
//! upgrades become a relay). An error (`error::ProxyError`) is noted once in the exchange
//! and answered by the front end in its own protocol (HTTP's answers all come from
//! `http::answer`); each exchange becomes one access-log record (`logging`) and counts in
//! `stats` (read by `metrics`); then the connection waits for the next request or closes.
//!
//! Dependencies point one way, from the leaves up: `budget`, `cut`, `error`, `files`,
//! `stats`, `target`; `limits`, `tunnel`; `http`, `acl`, `auth`, `inspect` (the inspection CA
//! and its leaf certificates), `logging`, `stream`, `client`,
//! `proxy_protocol`; `access`, `cache`, `metrics`; `tls`, `pac_file`, `upstream`,
//! `config` (the only module that knows the command line, and reads the configuration
//! file); `conn` (the exchange pipeline and the front-end contract); the front ends
//! `http_proxy` and `socks`; `server` and `explain` (the `explain` subcommand: the same
//! checks, printed). docs/architecture.md has the map and where the next front ends and
//! upstreams plug in.

// The library's API is what the binary, the integration tests, the fuzz targets and the
// benches use: settings, the server and its services, statistics, logs and metrics, and
// the parsers and rule sets worth fuzzing and measuring on their own. The request path's
// internals are private to the crate.
pub mod access;
pub mod acl;
pub mod allocator;
pub mod auth;
pub mod budget;
pub mod cache;
mod client;
pub mod config;
mod conn;
mod cut;
pub mod error;
pub mod explain;
pub mod files;
pub mod health;
pub mod http;
mod http_proxy;
pub mod inspect;
pub mod limits;
pub mod logging;
pub mod metrics;
mod pac_file;
mod proxy_protocol;
pub mod server;
pub mod socks;
pub mod stats;
mod stream;
mod target;
mod tls;
mod tunnel;
mod upstream;

pub use conn::Services;
