//! The settings the program runs with, and where they come from: the command line
//! (`cli`, the only place that knows clap) and the configuration file (`file`, TOML),
//! the command line winning where both speak. Each module defines its own settings type
//! (`AccessSettings`, `CacheSettings`, `LogSettings`, `MetricsSettings`); this module
//! gathers them into [`Settings`] at the edge, and library code receives them and never
//! reads flags or the environment.

mod cli;
mod file;
mod listen;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;

use crate::access::AccessSettings;
use crate::cache::CacheSettings;
use crate::http::edits::HeaderEdits;
use crate::logging::LogSettings;
use crate::metrics::MetricsSettings;
pub use crate::tls::TlsFiles;
use crate::tunnel::hello::SniCheck;
use crate::upstream::EgressSettings;
use crate::upstream::ResolverSettings;
pub use cli::{
    AccessFlags, CacheFlags, Cli, Command, EgressFlags, ExplainArgs, Invocation, ListenFlags,
    LoadError, LogFlags, LogFormatFlag, MetricsFlags, NewCaArgs, Source, invocation,
};
pub use file::{FlagKey, parse as parse_file};
pub use listen::{Listener, Protocol, check_listeners};

pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const DEFAULT_PORT: u16 = 8888;
pub const DEFAULT_MAX_CONNECTIONS: usize = 5000;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// No delay by default: a lone instance has no balancer to wait for, and stops at once as
/// it always did. Behind a balancer, set it above the health check's interval × fall
/// (docs/deployment.md).
pub const DEFAULT_DRAIN_DELAY_SECS: u64 = 0;
/// Longest accepted `--drain-delay`.
pub const MAX_DRAIN_DELAY_SECS: u64 = 3600;
pub const DEFAULT_VIA_NAME: &str = "proxy-server";

/// Timeouts the connection path receives; library code never reads flags or the environment.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub header: Duration,
    pub idle: Duration,
    pub response: Duration,
    pub shutdown_grace: Duration,
    /// How long to keep accepting, not ready, after SIGTERM before the drain.
    pub drain_delay: Duration,
}

/// The settings the core data path runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every listener, the main one (`--host`, `--port`) first; never empty.
    pub listeners: Vec<Listener>,
    /// The PAC file HTTP listeners answer `/proxy.pac` and `/wpad.dat` with; `None`:
    /// one generated for the listener asked.
    pub pac_file: Option<PathBuf>,
    pub max_connections: usize,
    /// Bytes body buffers may grow into across all connections (`budget`).
    pub max_buffer_memory: usize,
    pub timeouts: Timeouts,
    pub via_name: String,
    /// What a tunnel does with its ClientHello's server name.
    pub sni_check: SniCheck,
    pub access: AccessSettings,
    /// `None`: no cache.
    pub cache: Option<CacheSettings>,
    /// Where names are resolved.
    pub resolver: ResolverSettings,
    /// The local address outgoing connections are opened from; `None`: the system's choice.
    pub outgoing_address: Option<IpAddr>,
    /// Parent proxies and routes (docs/egress.md).
    pub egress: EgressSettings,
    /// `Via`, `X-Forwarded-For` and the `[headers]` lists.
    pub headers: HeaderEdits,
}

/// Everything the binary needs to start, from whatever source: the core [`Config`] the
/// server runs with, and the settings of the parts `main` starts beside it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    /// Tokio worker threads; `None`: one per CPU core.
    pub workers: Option<usize>,
}

impl Config {
    /// Defaults for a given listen address (used by tests and embedders).
    pub fn with_listen(listen: SocketAddr) -> Config {
        let mut config = Cli::parse_from(["proxy-server"]).settings().config;
        config.listeners = vec![Listener::http(listen)];
        config
    }

    /// The main listener's address (the first listener's).
    pub fn main_addr(&self) -> SocketAddr {
        self.listeners
            .first()
            .map_or(SocketAddr::new(DEFAULT_HOST, DEFAULT_PORT), |l| l.addr)
    }
}

/// The settings that differ between `old` and `new` and take effect only after a
/// restart (everything but the access policy, which a reload swaps in).
pub fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let (a, b) = (&old.config, &new.config);
    let differs = [
        (
            "listen addresses (host, port, TLS, SOCKS, PROXY protocol, PAC)",
            a.listeners != b.listeners || a.pac_file != b.pac_file,
        ),
        ("max_connections", a.max_connections != b.max_connections),
        (
            "max_buffer_memory",
            a.max_buffer_memory != b.max_buffer_memory,
        ),
        (
            "timeouts",
            format!("{:?}", a.timeouts) != format!("{:?}", b.timeouts),
        ),
        ("via_name", a.via_name != b.via_name),
        ("sni_check", a.sni_check != b.sni_check),
        ("cache", a.cache != b.cache),
        (
            "resolver and outgoing address",
            a.resolver != b.resolver || a.outgoing_address != b.outgoing_address,
        ),
        (
            "parents and routes",
            format!("{:?}", a.egress) != format!("{:?}", b.egress),
        ),
        ("headers", a.headers != b.headers),
        (
            "logging",
            format!("{:?}", old.log) != format!("{:?}", new.log),
        ),
        (
            "metrics",
            format!("{:?}", old.metrics) != format!("{:?}", new.metrics),
        ),
        ("workers", old.workers != new.workers),
    ];
    differs
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}
