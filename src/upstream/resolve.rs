//! Name resolution for the dialer: address literals as they are, names through an
//! asynchronous DNS resolver (`hickory-resolver`) with this module's own cache in front.
//! Every address found is returned, for the dialer to check before it connects to any.
//!
//! The cache is ours, not hickory's, for three reasons: concurrent lookups of one name
//! must become one query (hickory's stub resolver sends one per caller), the figures in
//! `/metrics` need to know a hit from a query, and a name with a trailing dot must share
//! the entry of the name without it. Answers live for their TTL held between
//! [`POSITIVE_TTL_FLOOR`] and [`POSITIVE_TTL_CAP`]; "no such name" and "no address" for
//! their SOA's negative TTL between [`NEGATIVE_TTL_FLOOR`] and [`NEGATIVE_TTL_CAP`];
//! timeouts and server failures are not cached (the next request asks again). The cache
//! holds at most [`CACHE_NAMES`] names, least recently used out first.
//!
//! At most [`MAX_LOOKUPS_IN_FLIGHT`] queries wait on the DNS servers at once (after the
//! cache and the collapsing: distinct names). hickory's stub resolver cannot share UDP
//! sockets between queries: each query, and each retransmission of it, opens a socket of
//! its own on a random port (RFC 5452 §9.2, against forged answers) with a 4 KiB receive
//! buffer, so a server that never answers leaves every pending lookup holding up to six
//! sockets (A and AAAA, three sends each) and about 60 KiB until the lookup times out.
//! The bound caps that at a few hundred descriptors and a few MiB whatever the clients
//! send. A lookup that finds no slot within [`LOOKUP_SLOT_WAIT`] fails at once with a
//! 502 saying the resolver is busy; it is not cached.
//!
//! Settings: `/etc/resolv.conf` (servers, search list, options) and `/etc/hosts` by
//! default; `--dns-server` replaces the former as a whole (those servers, no search
//! list), `--hosts-file` the latter. `--dns-timeout` bounds a whole lookup.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, ResolverBuilder, TokioResolver};
use lru::LruCache;
use tokio::sync::{OnceCell, Semaphore};

use super::literal::literal;
use crate::error::ProxyError;
use crate::stats::Stats;

/// The shortest time an answer is kept, whatever its TTL (a TTL of 0 would otherwise
/// send one query per request for a busy name).
pub const POSITIVE_TTL_FLOOR: Duration = Duration::from_secs(1);
/// The longest time an answer is kept, whatever its TTL: a moved host is found again
/// within five minutes.
pub const POSITIVE_TTL_CAP: Duration = Duration::from_secs(300);
/// The shortest and longest times a negative answer (no such name, no address) is kept.
pub const NEGATIVE_TTL_FLOOR: Duration = Duration::from_secs(1);
pub const NEGATIVE_TTL_CAP: Duration = Duration::from_secs(30);
/// A negative answer without an SOA record (so without a negative TTL).
pub const NEGATIVE_TTL_DEFAULT: Duration = Duration::from_secs(5);
/// Names the cache holds at most.
pub const CACHE_NAMES: usize = 10_000;
/// How long one lookup may take, across servers and retries, unless `--dns-timeout` says.
pub const DEFAULT_DNS_TIMEOUT_SECS: u64 = 5;
/// Queries that may wait on the DNS servers at once. Each holds up to six UDP sockets
/// while its server is silent (see the module's text), so at most 384 descriptors; a
/// server answering in 50 ms still gets 1,280 lookups a second through.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 64;
/// How long a lookup waits for one of the [`MAX_LOOKUPS_IN_FLIGHT`] slots (at most the
/// lookup timeout) before it fails as busy. Slots free in milliseconds while the servers
/// answer; when they all wait on a silent server, a client learns it at once instead of
/// queueing behind lookups that will time out.
pub const LOOKUP_SLOT_WAIT: Duration = Duration::from_secs(1);

/// Where names are resolved (`--dns-server`, `--hosts-file`, `--dns-timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// The DNS servers to ask, in order; empty: those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// The hosts file; `None`: `/etc/hosts`.
    pub hosts_file: Option<PathBuf>,
    /// The most one lookup may take.
    pub timeout: Duration,
}

impl Default for ResolverSettings {
    fn default() -> ResolverSettings {
        ResolverSettings {
            servers: Vec::new(),
            hosts_file: None,
            timeout: Duration::from_secs(DEFAULT_DNS_TIMEOUT_SECS),
        }
    }
}

/// The resolver and its cache. One per dialer.
pub struct Resolver {
    dns: TokioResolver,
    /// `/etc/hosts` or `--hosts-file`: a name listed there is answered from there alone,
    /// IPv4 first, as glibc does (hickory would also ask DNS for the family not listed).
    hosts: Hosts,
    /// Name (lower case, no trailing dot) to its answer, or to the query in flight that
    /// will fill it: every caller in the meantime waits on the same cell.
    cache: Mutex<LruCache<Box<str>, Arc<OnceCell<Answer>>>>,
    /// The [`MAX_LOOKUPS_IN_FLIGHT`] slots for queries to the DNS servers.
    slots: Semaphore,
    timeout: Duration,
    stats: Arc<Stats>,
}

/// What a query found, and until when it holds.
#[derive(Debug, Clone)]
struct Answer {
    found: Result<Arc<[IpAddr]>, Failure>,
    expires: Instant,
}

#[derive(Debug, Clone)]
enum Failure {
    /// No such name, or no address for it.
    NotFound,
    /// No answer within the lookup timeout.
    TimedOut,
    /// The servers failed or could not be reached.
    Failed(Arc<str>),
    /// Every slot for a query was taken for [`LOOKUP_SLOT_WAIT`]: nothing was asked.
    Busy,
}

impl Resolver {
    /// A resolver with `settings`; `stats` receives its figures. Errors name the file
    /// that could not be read.
    pub fn new(settings: &ResolverSettings, stats: Arc<Stats>) -> io::Result<Resolver> {
        let provider = TokioRuntimeProvider::default();
        let system = settings
            .servers
            .is_empty()
            .then(|| TokioResolver::builder(provider.clone()));
        let mut builder = match system {
            Some(Ok(builder)) => builder,
            Some(Err(error)) => {
                // What glibc does without a resolv.conf: ask a server on this host.
                tracing::warn!(%error, "cannot read /etc/resolv.conf; asking 127.0.0.1:53");
                with_servers(&[SocketAddr::from(([127, 0, 0, 1], 53))], provider)
            }
            None => with_servers(&settings.servers, provider),
        };
        let options = builder.options_mut();
        options.timeout = options.timeout.min(settings.timeout);
        // Our cache stands in front; hickory's would only hold the same answers twice.
        options.cache_size = 0;
        options.positive_min_ttl = Some(POSITIVE_TTL_FLOOR);
        options.positive_max_ttl = Some(POSITIVE_TTL_CAP);
        options.negative_min_ttl = Some(NEGATIVE_TTL_FLOOR);
        options.negative_max_ttl = Some(NEGATIVE_TTL_CAP);
        // The hosts file is ours to ask (`listed`), so hickory reads none.
        options.use_hosts_file = ResolveHosts::Never;
        let dns = builder.build().map_err(io::Error::other)?;
        let hosts = match &settings.hosts_file {
            Some(path) => {
                let mut hosts = Hosts::default();
                std::fs::File::open(path).and_then(|file| hosts.read_hosts_conf(file))?;
                hosts
            }
            None => Hosts::from_system().unwrap_or_default(),
        };
        let names = NonZeroUsize::new(CACHE_NAMES).unwrap_or(NonZeroUsize::MIN);
        Ok(Resolver {
            dns,
            hosts,
            cache: Mutex::new(LruCache::new(names)),
            slots: Semaphore::new(MAX_LOOKUPS_IN_FLIGHT),
            timeout: settings.timeout,
            stats,
        })
    }

    /// Counts into `stats` from now on.
    pub fn use_stats(&mut self, stats: Arc<Stats>) {
        self.stats = stats;
    }

    /// Resolves `host` to the addresses a connection may go to. IP literals skip DNS; a
    /// trailing dot is dropped (`example.com.` is `example.com`).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ProxyError> {
        let name = host.trim_end_matches('.');
        if let Some(ip) = literal(name) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let answer = self.answer(name).await;
        match answer.found {
            Ok(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
            Err(failure) => Err(ProxyError::Resolve {
                host: name.to_string(),
                source: failure.into(),
            }),
        }
    }

    /// The cached answer for `name`, or the one query in flight for it, or a new query.
    async fn answer(&self, name: &str) -> Answer {
        let dns = self.stats.dns();
        dns.lookup();
        let cell = self.cell(name);
        if let Some(answer) = cell.get() {
            dns.cache_hit();
            return answer.clone();
        }
        let mut asked = false;
        let answer = cell
            .get_or_init(|| {
                asked = true;
                self.query(name)
            })
            .await;
        if !asked {
            dns.collapsed();
        }
        answer.clone()
    }

    /// The cell for `name`: the current one, or a new empty one in place of a missing or
    /// expired one. The lock is held for a map operation only, never across a query.
    fn cell(&self, name: &str) -> Arc<OnceCell<Answer>> {
        let key = name.to_ascii_lowercase().into_boxed_str();
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = cache.get(&key)
            && cell.get().is_none_or(|answer| answer.expires > now)
        {
            return Arc::clone(cell);
        }
        let cell = Arc::new(OnceCell::new());
        cache.put(key, Arc::clone(&cell));
        cell
    }

    /// The addresses the hosts file lists for `name`, IPv4 first; `None` if none.
    fn listed(&self, name: &str) -> Option<Arc<[IpAddr]>> {
        let name = Name::from_ascii(name).ok()?;
        let ips: Arc<[IpAddr]> = [RecordType::A, RecordType::AAAA]
            .into_iter()
            .filter_map(|kind| {
                self.hosts
                    .lookup_static_host(&Query::query(name.clone(), kind))
            })
            .flat_map(|lookup| {
                let answers = lookup.answers().to_vec();
                answers
                    .into_iter()
                    .filter_map(|record| record.data.ip_addr())
            })
            .collect();
        (!ips.is_empty()).then_some(ips)
    }

    async fn query(&self, name: &str) -> Answer {
        if let Some(ips) = self.listed(name) {
            return Answer {
                found: Ok(ips),
                expires: Instant::now() + POSITIVE_TTL_CAP,
            };
        }
        let wait = LOOKUP_SLOT_WAIT.min(self.timeout);
        let Ok(Ok(_slot)) = tokio::time::timeout(wait, self.slots.acquire()).await else {
            self.stats.dns().failed();
            return Answer {
                found: Err(Failure::Busy),
                expires: Instant::now(),
            };
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.dns.lookup_ip(name)).await;
        let now = Instant::now();
        self.stats.dns().queried(now - started);
        let answer = match result {
            Ok(Ok(lookup)) => {
                let ips: Arc<[IpAddr]> = lookup.iter().collect();
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(now)
                    .clamp(POSITIVE_TTL_FLOOR, POSITIVE_TTL_CAP);
                if ips.is_empty() {
                    negative(now, None)
                } else {
                    Answer {
                        found: Ok(ips),
                        expires: now + ttl,
                    }
                }
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => {
                negative(now, none.negative_ttl)
            }
            Ok(Err(error)) => Answer {
                found: Err(Failure::Failed(error.to_string().into())),
                expires: now,
            },
            Err(_) => Answer {
                found: Err(Failure::TimedOut),
                expires: now,
            },
        };
        if answer.found.is_err() {
            self.stats.dns().failed();
        }
        answer
    }
}

/// A builder asking `servers` (UDP, then TCP for truncated answers), no search list.
fn with_servers(
    servers: &[SocketAddr],
    provider: TokioRuntimeProvider,
) -> ResolverBuilder<TokioRuntimeProvider> {
    let servers = servers.iter().map(|addr| {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
    });
    let config = ResolverConfig::from_name_servers(servers.collect());
    TokioResolver::builder_with_config(config, provider)
}

/// "No such name" or "no address", kept for `ttl` seconds within the negative bounds.
fn negative(now: Instant, ttl: Option<u32>) -> Answer {
    let ttl = ttl.map_or(NEGATIVE_TTL_DEFAULT, |secs| {
        Duration::from_secs(u64::from(secs))
    });
    Answer {
        found: Err(Failure::NotFound),
        expires: now + ttl.clamp(NEGATIVE_TTL_FLOOR, NEGATIVE_TTL_CAP),
    }
}

impl From<Failure> for io::Error {
    fn from(failure: Failure) -> io::Error {
        match failure {
            Failure::NotFound => io::Error::new(io::ErrorKind::NotFound, "no such name"),
            Failure::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from the DNS server in time",
            ),
            Failure::Failed(reason) => io::Error::other(reason.to_string()),
            Failure::Busy => io::Error::new(
                io::ErrorKind::ResourceBusy,
                "too many lookups waiting for the DNS server",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[tokio::test]
    async fn literals_skip_the_resolver_and_failures_keep_their_cause() {
        let resolver = Resolver::new(&ResolverSettings::default(), Arc::default()).unwrap();
        assert_eq!(
            resolver.resolve("127.0.0.1", 80).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolver.resolve("::1", 443).await.unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        // `.invalid` never resolves (RFC 6761 §6.4), without a query.
        let error = resolver
            .resolve("no-such-host.invalid.", 80)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(502));
        assert_eq!(error.brief(), "upstream_resolve");
        assert_eq!(
            error.body(),
            "Bad gateway: cannot resolve no-such-host.invalid.\n"
        );
        assert!(error.source().is_some(), "the resolver's error is kept");
    }

    /// With every slot held by a lookup a silent server never answers, the next lookup
    /// fails as busy after [`LOOKUP_SLOT_WAIT`], with a body that says so.
    #[tokio::test]
    async fn a_lookup_without_a_slot_fails_as_busy() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let settings = ResolverSettings {
            servers: vec![silent.local_addr().unwrap()],
            hosts_file: None,
            timeout: Duration::from_secs(5),
        };
        let resolver = Arc::new(Resolver::new(&settings, Arc::default()).unwrap());
        let pending: Vec<_> = (0..MAX_LOOKUPS_IN_FLIGHT)
            .map(|i| {
                let resolver = Arc::clone(&resolver);
                tokio::spawn(async move { resolver.resolve(&format!("n{i}.test"), 80).await })
            })
            .collect();
        let taken = async {
            while resolver.slots.available_permits() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), taken)
            .await
            .unwrap();
        let started = Instant::now();
        let error = resolver.resolve("one-more.test", 80).await.unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= LOOKUP_SLOT_WAIT && waited < LOOKUP_SLOT_WAIT * 2,
            "{waited:?}"
        );
        assert_eq!(error.status(), Some(502));
        assert_eq!(
            error.body(),
            "Bad gateway: cannot resolve one-more.test: too many lookups waiting for the DNS server.\n"
        );
        pending.iter().for_each(|task| task.abort());
    }

    #[tokio::test]
    async fn localhost_with_or_without_a_trailing_dot_is_one_cache_entry() {
        let stats = Arc::new(Stats::default());
        let resolver = Resolver::new(&ResolverSettings::default(), Arc::clone(&stats)).unwrap();
        let plain = resolver.resolve("localhost", 80).await.unwrap();
        let dotted = resolver.resolve("LocalHost.", 80).await.unwrap();
        assert_eq!(plain, dotted);
        assert!(plain.contains(&"127.0.0.1:80".parse().unwrap()));
        let figures = stats.snapshot().dns;
        assert_eq!((figures.lookups, figures.cache_hits), (2, 1));
    }
}
