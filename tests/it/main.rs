//! The integration tests, as one binary (one link instead of one per file). Each module
//! covers one feature end to end; `common` holds every fixture they share: origins that
//! record what they receive, the proxy started in-process (one entry point, `Proxy`) or
//! as the real binary (`ProxyProcess`), raw-socket clients, and the checkers for logs and
//! metrics. Everything listens on loopback ephemeral ports and every wait has a deadline.
//!
//! Time is real here, not tokio's paused clock: with the clock paused, a runtime that
//! waits on a socket jumps straight to its next timer (tokio 1.x auto-advance ignores
//! I/O in flight), so an exchange crossing client, proxy and origin would see its own
//! step deadlines fire; and the proxy takes its head and tunnel-idle deadlines and the
//! cache its ages from `std::time`, which a paused clock does not move.

mod common;

mod abuse;
mod access_log;
mod acl;
mod addr_hardening;
mod auth;
mod auth_hardening;
mod buffer_budget;
mod cache_limits;
mod cache_store;
mod cache_validation;
mod cli;
mod connect;
mod dashboard;
mod docs_flags;
mod egress_headers;
mod egress_parents;
mod egress_routes;
mod errors;
mod faults;
mod fleet;
mod fleet_restart;
mod fleet_service;
mod forward;
mod handover_hardening;
mod limits;
mod listen_all;
mod listen_file;
mod listen_pac;
mod listen_proxy_protocol;
mod listen_socks;
mod listen_tls;
mod observe_logging;
mod observe_metrics;
mod package;
mod policy;
mod properties;
mod proxy_status;
mod resolver;
mod smuggling;
mod spliced_bodies;
mod statistics;
mod tunnel;
mod tunnel_sni;
mod user_limits;
