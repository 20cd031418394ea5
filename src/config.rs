//! Command-line flags, their defaults and validation, and the settings the library runs
//! with. Each feature owns its flag group (`AccessArgs`, …), flattened into [`Cli`] here;
//! library code receives a [`Config`] and never reads flags or the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser as _;

use crate::access::AccessArgs;
use crate::cache::CacheArgs;
use crate::logging::LogArgs;
use crate::metrics::MetricsArgs;

pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const DEFAULT_PORT: u16 = 8888;
pub const DEFAULT_MAX_CONNECTIONS: usize = 5000;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
pub const DEFAULT_VIA_NAME: &str = "proxy-server";

/// A fast, small forward proxy for HTTP and HTTPS (CONNECT).
///
/// Point `curl -x http://HOST:PORT`, a browser, or HTTP_PROXY/HTTPS_PROXY at it.
#[derive(Parser, Debug, Clone)]
#[command(name = "proxy-server", version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on (IPv4 or IPv6). Loopback by default: listening on a public
    /// address makes an open proxy unless authentication or a client allow list is set.
    #[arg(long, default_value_t = DEFAULT_HOST)]
    pub host: IpAddr,

    /// TCP port to listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Most client connections served at once; a connection over the limit is answered
    /// `503 Service Unavailable` and closed.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|v| v as usize))]
    pub max_connections: usize,

    /// Seconds to wait for a TCP connection to an origin (then `504`).
    #[arg(long, default_value_t = DEFAULT_CONNECT_TIMEOUT_SECS, value_parser = secs)]
    pub connect_timeout: u64,

    /// Seconds a client may take to send a complete request head (slowloris guard).
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT_SECS, value_parser = secs)]
    pub header_timeout: u64,

    /// Seconds an idle keep-alive connection or a silent tunnel is kept open.
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT_SECS, value_parser = secs)]
    pub idle_timeout: u64,

    /// Seconds to wait for an origin's response head, and between reads of its body (then `504`).
    #[arg(long, default_value_t = DEFAULT_RESPONSE_TIMEOUT_SECS, value_parser = secs)]
    pub response_timeout: u64,

    /// Seconds requests in flight may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace: u64,

    /// Name this proxy adds to `Via`; a request already carrying it is a loop (`508`).
    /// Give chained instances different names.
    #[arg(long, default_value = DEFAULT_VIA_NAME, value_parser = via_name)]
    pub via_name: String,

    /// Tokio worker threads [default: number of CPU cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024).map(|v| v as usize))]
    pub workers: Option<usize>,

    /// Console log level or filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing filter such as `proxy_server=debug`); `RUST_LOG` overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

fn secs(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err("expected a whole number of seconds from 1 to 86400".into()),
    }
}

fn via_name(text: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:".contains(&b);
    if !text.is_empty() && text.bytes().all(token) {
        Ok(text.to_string())
    } else {
        Err("expected a token such as proxy-server or gw1.example:8888".into())
    }
}

/// Timeouts the connection path receives; library code never reads flags or the environment.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub header: Duration,
    pub idle: Duration,
    pub response: Duration,
    pub shutdown_grace: Duration,
}

/// The settings the core data path runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub via_name: String,
    pub access: AccessArgs,
    pub cache: CacheArgs,
}

impl Config {
    pub fn from_cli(cli: &Cli) -> Config {
        Config {
            listen: SocketAddr::new(cli.host, cli.port),
            max_connections: cli.max_connections,
            timeouts: Timeouts {
                connect: Duration::from_secs(cli.connect_timeout),
                header: Duration::from_secs(cli.header_timeout),
                idle: Duration::from_secs(cli.idle_timeout),
                response: Duration::from_secs(cli.response_timeout),
                shutdown_grace: Duration::from_secs(cli.shutdown_grace),
            },
            via_name: cli.via_name.clone(),
            access: cli.access.clone(),
            cache: cli.cache.clone(),
        }
    }

    /// Defaults for a given listen address (used by tests and embedders).
    pub fn with_listen(listen: SocketAddr) -> Config {
        let mut cli = Cli::parse_from(["proxy-server"]);
        cli.host = listen.ip();
        cli.port = listen.port();
        Config::from_cli(&cli)
    }
}
