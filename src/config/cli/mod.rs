//! The command line: every flag, its default and its validation, in one place, and the
//! conversion into the settings each module defines for itself ([`Settings`]); the
//! `explain` subcommand's arguments; and (`merge`) how a configuration file's flag keys
//! join the command line. The only module that knows clap; help text comes from the doc
//! comments here, so `--help` and the flag table in the docs are checked against each
//! other by a test.

mod egress;
mod merge;
mod resolver;

pub use egress::EgressFlags;

pub use merge::{Invocation, LoadError, Source, invocation};
pub use resolver::ResolverFlags;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Parser, ValueHint};
use ipnet::IpNet;

use super::{
    Config, DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_DRAIN_DELAY_SECS, DEFAULT_HEADER_TIMEOUT_SECS,
    DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT,
    DEFAULT_RESPONSE_TIMEOUT_SECS, DEFAULT_SHUTDOWN_GRACE_SECS, DEFAULT_VIA_NAME, Listener,
    MAX_DRAIN_DELAY_SECS, Settings, Timeouts, TlsFiles,
};
use crate::access::AccessSettings;
use crate::acl::{DEFAULT_CONNECT_PORTS, PortSet, parse_client_net};
use crate::budget::DEFAULT_MAX_BUFFER_MEMORY_MIB;
use crate::cache::{CacheSettings, DEFAULT_CACHE_MAX_OBJECT_KIB, DEFAULT_CACHE_SIZE_MIB};
use crate::inspect::{DEFAULT_CA_DAYS, DEFAULT_CA_NAME, MAX_CA_DAYS, NewCa};
use crate::logging::{
    DEFAULT_LOG_DIR, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE_MIB, LogFormat, LogSettings,
    MAX_LOG_MAX_SIZE_MIB, RotationPolicy,
};
use crate::metrics::{MIN_STATS_INTERVAL_SECS, MetricsSettings};
use crate::tunnel::hello::SniCheck;

/// A fast, small forward proxy for HTTP and HTTPS (CONNECT).
///
/// Point `curl -x http://HOST:PORT`, a browser, or HTTP_PROXY/HTTPS_PROXY at it.
#[derive(Parser, Debug, Clone)]
#[command(name = "proxy-server", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct Cli {
    /// Read settings and the access policy from this TOML file: every flag as a key with
    /// `_` for `-`, plus `default`, `[groups]`, `[[rules]]` and `[limits]` (see
    /// docs/configuration.md). Flags given on the command line override the file.
    /// Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Check the configuration (the --config file and every file the settings name),
    /// print each problem as `file:line: reason`, and exit: 0 when all is well, 2 otherwise.
    #[arg(long)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,

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

    /// Memory, in MiB, that body buffers of all connections together may grow into
    /// beyond their first 64 KiB each; when it is spent, transfers go on with small
    /// buffers. 0: buffers never grow.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_BUFFER_MEMORY_MIB,
          value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub max_buffer_memory: u64,

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

    /// Seconds to keep accepting after SIGTERM while /readyz already answers 503, so a
    /// load balancer's health check takes this instance out before its listeners close;
    /// then the drain (--shutdown-grace) begins.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_DRAIN_DELAY_SECS,
          value_parser = clap::value_parser!(u64).range(0..=MAX_DRAIN_DELAY_SECS))]
    pub drain_delay: u64,

    /// Name this proxy adds to `Via`; a request already carrying it is a loop (`508`).
    /// Give chained instances different names.
    #[arg(long, default_value = DEFAULT_VIA_NAME, value_parser = via_name)]
    pub via_name: String,

    /// What a tunnel does with the server name of the client's TLS ClientHello (SNI):
    /// `match` refuses a name other than the CONNECT host (domain fronting) and, when the
    /// CONNECT names an address, checks the name against the rules as the destination;
    /// `off` only records it.
    #[arg(long, value_name = "match|off", default_value_t = SniCheck::Match)]
    pub sni_check: SniCheck,

    /// Tokio worker threads [default: number of CPU cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024).map(|v| v as usize))]
    pub workers: Option<usize>,

    /// Console log level or filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing filter such as `proxy_server=debug`); `RUST_LOG` overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    #[command(flatten)]
    pub listen: ListenFlags,

    #[command(flatten)]
    pub access: AccessFlags,

    #[command(flatten)]
    pub cache: CacheFlags,

    #[command(flatten)]
    pub log: LogFlags,

    #[command(flatten)]
    pub metrics: MetricsFlags,

    #[command(flatten)]
    pub egress: EgressFlags,

    #[command(flatten)]
    pub resolver: ResolverFlags,
}

/// What else the binary can do besides serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Show what the policy decides for one request: the decision, the rule that made
    /// it, the addresses the host resolves to, and why each earlier rule did not match.
    /// Exit 0 for allow, 1 for deny or authentication required, 2 for bad input.
    Explain(ExplainArgs),
    /// Make a CA for TLS inspection: an ECDSA P-256 certificate (CA:TRUE, keyCertSign,
    /// cRLSign) and its private key (mode 0600). Neither file may exist yet. Give the
    /// certificate to clients and name both in [inspection] (docs/inspection.md).
    NewCa(NewCaArgs),
}

/// `proxy-server new-ca --cert FILE --key FILE [--name NAME] [--days N]`.
#[derive(clap::Args, Debug, Clone)]
pub struct NewCaArgs {
    /// Where to write the CA certificate (PEM).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub cert: PathBuf,
    /// Where to write its private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub key: PathBuf,
    /// The CA's name (its subject's common name), as clients will show it.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CA_NAME, value_parser = ca_name)]
    pub name: String,
    /// Days the CA is valid (1 to 3650).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CA_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CA_DAYS)))]
    pub days: u32,
}

impl NewCaArgs {
    /// What the inspection module is asked to make.
    pub fn request(&self) -> NewCa {
        NewCa {
            cert: self.cert.clone(),
            key: self.key.clone(),
            name: self.name.clone(),
            days: self.days,
        }
    }
}

/// A CA name: printable, not empty, at most 64 characters (X.520's ub-common-name).
fn ca_name(text: &str) -> Result<String, String> {
    let fits = !text.trim().is_empty() && text.chars().count() <= 64;
    if fits && !text.chars().any(char::is_control) {
        Ok(text.to_string())
    } else {
        Err("expected 1 to 64 printable characters".into())
    }
}

/// `proxy-server explain [--config FILE] [--user NAME] [--client IP] METHOD URL`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The configuration file whose policy to ask.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Ask as this (authenticated) user; no password needed.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Ask as a client at this address.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub client: IpAddr,
    /// The request method (`GET`, `CONNECT`, …).
    pub method: String,
    /// `http://host[:port]/path`, or `host:port` with CONNECT.
    pub url: String,
}

/// What the main listener speaks, and the listeners beside it (`config::Listener`).
#[derive(clap::Args, Debug, Clone)]
pub struct ListenFlags {
    /// Speak TLS on the main listener (an HTTPS proxy) with this PEM certificate chain;
    /// needs --tls-key. Re-read on SIGHUP [default: off]
    #[arg(long, value_name = "FILE", requires = "tls_key", value_hint = ValueHint::FilePath)]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert. Re-read on SIGHUP
    #[arg(long, value_name = "FILE", requires = "tls_cert", value_hint = ValueHint::FilePath)]
    pub tls_key: Option<PathBuf>,

    /// Connections to the main listener from these networks must open with a PROXY
    /// protocol header (v1 or v2), whose source address then stands for the client's:
    /// comma-separated CIDR networks or addresses [default: none]
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_client_net)]
    pub proxy_protocol_from: Vec<IpNet>,

    /// Also serve SOCKS5 (CONNECT, no authentication or username/password against
    /// --auth-file) on this address, e.g. 127.0.0.1:1080 [default: off]
    #[arg(long, value_name = "ADDR")]
    pub socks: Option<SocketAddr>,

    /// Answer `GET /proxy.pac` and `/wpad.dat` on HTTP listeners with this file, read at
    /// start and on SIGHUP; without it a PAC pointing at the listener asked is served
    /// [default: generated]
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub pac_file: Option<PathBuf>,
}

impl ListenFlags {
    /// The main listener on `addr`, then the SOCKS5 one if asked for.
    fn listeners(&self, addr: SocketAddr) -> Vec<Listener> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let main = Listener {
            tls,
            proxy_protocol_from: self.proxy_protocol_from.clone(),
            ..Listener::http(addr)
        };
        std::iter::once(main)
            .chain(self.socks.map(Listener::socks5))
            .collect()
    }
}

/// Authentication and the ACL (`access::AccessSettings`).
#[derive(clap::Args, Debug, Clone)]
pub struct AccessFlags {
    /// Require Basic proxy authentication against this users file: one
    /// `user:password` per line, the password in clear text or a bcrypt hash as
    /// written by `htpasswd -nbB user password`. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub auth_file: Option<PathBuf>,

    /// Refuse destinations listed in this rules file: `example.com`, `*.ads.com`
    /// (subdomains), `10.0.0.0/8`, `fd00::/8`, bare addresses and hosts-file lines
    /// (`0.0.0.0 tracker.com`). Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub blacklist: Option<PathBuf>,

    /// Allow destinations on loopback (127.0.0.0/8, ::1), link-local
    /// (169.254.0.0/16, fe80::/10) and unspecified addresses, which are refused by
    /// default. Rules in the --blacklist file still apply.
    #[arg(long)]
    pub allow_local_targets: bool,

    /// Ports CONNECT may reach: a comma-separated list of ports and ranges, e.g.
    /// `443,8443,1024-65535`.
    #[arg(long, value_name = "LIST", default_value = DEFAULT_CONNECT_PORTS)]
    pub connect_ports: PortSet,

    /// Only clients from these networks may use the proxy: comma-separated CIDR
    /// networks or addresses. Default: any client.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_client_net)]
    pub allow_clients: Option<Vec<IpNet>>,
}

/// The response cache (`cache::CacheSettings`).
#[derive(clap::Args, Debug, Clone)]
pub struct CacheFlags {
    /// Serve repeated GET requests from an in-memory cache that follows the HTTP caching rules (RFC 9111)
    #[arg(long)]
    pub cache: bool,

    /// Most memory the cache may hold, in MiB (response headers and bodies counted)
    #[arg(long = "cache-size", value_name = "MIB", default_value_t = DEFAULT_CACHE_SIZE_MIB,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_size: u64,

    /// Largest single response the cache stores, in KiB; larger ones are streamed but not stored
    #[arg(long = "cache-max-object", value_name = "KIB", default_value_t = DEFAULT_CACHE_MAX_OBJECT_KIB,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub cache_max_object: u64,
}

/// Where and how the proxy writes its logs (`logging::LogSettings`).
#[derive(clap::Args, Debug, Clone)]
pub struct LogFlags {
    /// Directory for access.log and proxy.log (created if missing)
    #[arg(long = "log-dir", value_name = "DIR", default_value = DEFAULT_LOG_DIR,
          value_hint = ValueHint::DirPath)]
    pub log_dir: PathBuf,
    /// Access log line format
    #[arg(long = "log-format", value_enum, default_value_t = LogFormatFlag::Squid)]
    pub log_format: LogFormatFlag,
    /// Rotate a log file before it grows past this many MiB
    #[arg(long = "log-max-size", value_name = "MIB", default_value_t = DEFAULT_LOG_MAX_SIZE_MIB,
          value_parser = clap::value_parser!(u64).range(1..=MAX_LOG_MAX_SIZE_MIB))]
    pub log_max_size: u64,
    /// Rotated files kept per log (NAME.1 newest … NAME.N oldest); 0 keeps none
    #[arg(long = "log-keep", value_name = "N", default_value_t = DEFAULT_LOG_KEEP)]
    pub log_keep: u32,
}

/// Access log line format, as the flag names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormatFlag {
    /// Squid's native access.log layout plus request bytes and outcome
    Squid,
    /// One JSON object per line
    Json,
}

/// Live statistics reporting (`metrics::MetricsSettings`).
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsFlags {
    /// Serve /metrics (Prometheus), /stats (JSON) and / (HTML) on this address, e.g.
    /// 127.0.0.1:9898 [default: off]
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Write a one-line statistics summary to the diagnostics log every SECS seconds
    /// [default: off]
    #[arg(long = "stats-interval", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(MIN_STATS_INTERVAL_SECS..))]
    pub stats_interval: Option<u64>,
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

const BYTES_PER_KIB: u64 = 1 << 10;
const BYTES_PER_MIB: u64 = 1 << 20;

/// `n` units as a byte count, saturating where it would not fit.
fn bytes(n: u64, unit: u64) -> usize {
    usize::try_from(n.saturating_mul(unit)).unwrap_or(usize::MAX)
}

impl Cli {
    /// What the flags say, as the settings each part of the program takes.
    pub fn settings(&self) -> Settings {
        Settings {
            config: self.config(),
            log: self.log.settings(&self.log_level),
            metrics: MetricsSettings {
                addr: self.metrics.metrics_addr,
                stats_interval: self.metrics.stats_interval.map(Duration::from_secs),
            },
            workers: self.workers,
        }
    }

    fn config(&self) -> Config {
        Config {
            listeners: self.listen.listeners(SocketAddr::new(self.host, self.port)),
            pac_file: self.listen.pac_file.clone(),
            max_connections: self.max_connections,
            max_buffer_memory: bytes(self.max_buffer_memory, BYTES_PER_MIB),
            timeouts: Timeouts {
                connect: Duration::from_secs(self.connect_timeout),
                header: Duration::from_secs(self.header_timeout),
                idle: Duration::from_secs(self.idle_timeout),
                response: Duration::from_secs(self.response_timeout),
                shutdown_grace: Duration::from_secs(self.shutdown_grace),
                drain_delay: Duration::from_secs(self.drain_delay),
            },
            via_name: self.via_name.clone(),
            sni_check: self.sni_check,
            access: self.access.settings(),
            cache: self.cache.settings(),
            resolver: self.resolver.settings(),
            outgoing_address: self.resolver.outgoing_address,
            egress: self.egress.egress(),
            headers: self.egress.headers(),
        }
    }
}

impl AccessFlags {
    fn settings(&self) -> AccessSettings {
        AccessSettings {
            auth_file: self.auth_file.clone(),
            blacklist: self.blacklist.clone(),
            allow_local_targets: self.allow_local_targets,
            connect_ports: self.connect_ports.clone(),
            allow_clients: self.allow_clients.clone(),
            rules: None,
            limits: Default::default(),
            clock: None,
            inspection: None,
        }
    }
}

impl CacheFlags {
    fn settings(&self) -> Option<CacheSettings> {
        self.cache.then(|| CacheSettings {
            capacity: bytes(self.cache_size, BYTES_PER_MIB),
            max_object: bytes(self.cache_max_object, BYTES_PER_KIB),
        })
    }
}

impl LogFlags {
    fn settings(&self, level: &str) -> LogSettings {
        LogSettings {
            dir: self.log_dir.clone(),
            format: match self.log_format {
                LogFormatFlag::Squid => LogFormat::Squid,
                LogFormatFlag::Json => LogFormat::Json,
            },
            rotation: RotationPolicy {
                max_bytes: self.log_max_size.saturating_mul(BYTES_PER_MIB),
                keep: self.log_keep,
            },
            level: level.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
