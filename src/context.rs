//! What a connection task shares with the rest of the process (settings, access state,
//! the dialer and its pool, the cache, statistics, the shutdown signal), what every
//! front end does the same way (relay a tunnel with live counts, record an exchange),
//! and the record of one exchange that the front end fills in as it goes and logs when
//! it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::access::{AccessControl, Admission, Decision, Snapshot};
use crate::acl::AddressCheck;
use crate::cache::Cache;
use crate::client::{ClientStream, ListenerId};
use crate::config::{Config, Listener};
use crate::error::ProxyError;
use crate::files::{FileErrors, LineError};
use crate::limits::{LimitSettings, Limiter, MAX_KEYS, Pacer};
use crate::logging::{AccessLog, AccessRecord, CacheResult};
use crate::pac_file::PacFile;
use crate::stats::top::Detail;
use crate::stats::{Outcome, RuleAction, Seen, Stats};
use crate::target::Target;
use crate::tls::Certificates;
use crate::tunnel::{self, Direction};
use crate::upstream::{Connector, Dialer, Link, Resolver, Routes, UpstreamStream};

/// The long-lived state the server runs with, built at start: the access rules and the
/// TLS listeners' certificates and the PAC file (whose file errors `main` reports with
/// exit code 2, all together), the cache, the statistics and the access log.
pub struct Services {
    pub access: AccessControl,
    pub cache: Option<Cache>,
    pub stats: Arc<Stats>,
    /// `None` writes no access log (embedders and tests that do not need one).
    pub access_log: Option<AccessLog>,
    /// Each listener's certificates, in the order of `Config::listeners`; `None` for a
    /// listener without TLS.
    pub tls: Vec<Option<Certificates>>,
    /// The `--pac-file` contents (re-read on SIGHUP); `None`: generated per listener.
    pub pac: Option<PacFile>,
    /// The resolver and its cache (with `/etc/resolv.conf` or `--dns-server`, and the
    /// hosts file read).
    pub resolver: Resolver,
    /// Keys of each kind the limiter holds ([`MAX_KEYS`]; blocked addresses in
    /// proportion). Only tests set it lower, to reach the bound with few clients.
    pub limiter_keys: usize,
}

impl Services {
    pub fn load(config: &Config) -> Result<Services, FileErrors> {
        let access = AccessControl::load(&config.access);
        let tls: Vec<_> = config
            .listeners
            .iter()
            .map(|listener| listener.tls.as_ref().map(Certificates::load).transpose())
            .collect();
        let pac = config.pac_file.as_deref().map(PacFile::load).transpose();
        let stats: Arc<Stats> = Arc::default();
        let resolver = Resolver::new(&config.resolver, Arc::clone(&stats));
        let mut errors = Vec::new();
        let access = access.map_err(|e| errors.extend(e.0)).ok();
        let tls: Vec<_> = tls
            .into_iter()
            .filter_map(|loaded| loaded.map_err(|e| errors.extend(e.0)).ok())
            .collect();
        let pac = pac.map_err(|e| errors.push(e)).ok();
        let resolver = resolver
            .map_err(|e| {
                let file = config.resolver.hosts_file.as_ref();
                errors.push(LineError {
                    file: file.map_or("resolver".into(), |f| f.display().to_string()),
                    line: 0,
                    reason: format!("cannot read hosts file: {e}"),
                })
            })
            .ok();
        match (access, pac, resolver) {
            (Some(access), Some(pac), Some(resolver)) if errors.is_empty() => Ok(Services {
                access,
                cache: config.cache.as_ref().map(Cache::with_settings),
                stats,
                access_log: None,
                tls,
                pac,
                resolver,
                limiter_keys: MAX_KEYS,
            }),
            _ => Err(FileErrors(errors)),
        }
    }
}

impl Services {
    /// Counts into `stats` from now on (the binary makes its statistics after loading,
    /// for the logging pipeline): the connection path's and the resolver's figures.
    pub fn use_stats(&mut self, stats: Arc<Stats>) {
        self.resolver.use_stats(Arc::clone(&stats));
        self.stats = stats;
    }
}

pub struct Context {
    pub config: Config,
    pub dialer: Dialer,
    pub access: AccessControl,
    pub cache: Option<Cache>,
    pub stats: Arc<Stats>,
    /// Per-user limit state; which limits apply to a request is the front end's to say.
    pub limits: Limiter,
    /// The `--pac-file` contents (re-read on SIGHUP); `None`: generated per listener.
    pub pac: Option<PacFile>,
    access_log: Option<AccessLog>,
    shutdown: Shutdown,
}

/// The drain signal: a flag that requests check, and a wake-up for connections waiting
/// idle. A [`Notified`] is about half the size of a `watch` receiver's `changed()`, and
/// every idle connection holds one (see docs/performance.md, "Idle connections" (S5)).
#[derive(Default)]
struct Shutdown {
    started: AtomicBool,
    wake: Notify,
}

impl Context {
    pub fn new(config: Config, services: Services) -> Context {
        let listening = config.listeners.iter().map(|l| l.addr).collect();
        let connector = Connector::new(config.timeouts.connect, config.outgoing_address);
        let routes = Routes::new(config.egress.clone(), &services.stats);
        let dialer = Dialer::new(
            services.access.clone(),
            listening,
            services.resolver,
            connector,
        )
        .with_routes(routes);
        Context {
            config,
            dialer,
            access: services.access,
            cache: services.cache,
            limits: Limiter::with_capacity(services.limiter_keys, Arc::clone(&services.stats)),
            stats: services.stats,
            pac: services.pac,
            access_log: services.access_log,
            shutdown: Shutdown::default(),
        }
    }

    /// The listener a connection arrived on.
    pub fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.config.listeners.get(usize::from(id.0))
    }

    /// The address of the listener `id` (as bound), for admission and logs.
    pub fn listener_addr(&self, id: ListenerId) -> SocketAddr {
        self.listener(id)
            .map_or_else(|| self.config.main_addr(), |l| l.addr)
    }

    /// The one admission every front end asks for, with what follows from it: the
    /// decision (credentials by the one authentication path, which refuses a client
    /// address blocked for failing authentication with 429 before reading them) is noted
    /// in the exchange (user, deciding rule, the rule's limits, what is left to the
    /// addresses). Returns the limits that apply: the allowing rule's own, else
    /// everyone's. Front ends turn the error into their own answer.
    pub async fn admit(
        &self,
        access: &Snapshot,
        request: &Admission<'_>,
        exchange: &mut Exchange,
    ) -> Result<Arc<LimitSettings>, ProxyError> {
        match access.admit(request, &self.limits).await {
            Decision::Allow {
                user,
                rule,
                limits,
                addresses,
            } => {
                exchange.user = user;
                exchange.rule = rule;
                exchange.limits.clone_from(&limits);
                exchange.addresses = addresses;
                Ok(limits.unwrap_or_else(|| Arc::clone(&access.limits)))
            }
            // The front end notes the refusing rule as it answers (a refusal may also
            // come from the dialer).
            Decision::Deny(refusal) => Err(ProxyError::Forbidden(refusal)),
            Decision::AuthRequired(failure, rule) => {
                Err(ProxyError::ProxyAuthRequired(failure, rule))
            }
            Decision::Limited(over) => Err(ProxyError::TooManyRequests(over)),
        }
    }

    /// Counts a finished exchange and writes its access-log line.
    pub fn record(&self, exchange: Exchange) {
        let duration = exchange.started.elapsed();
        let stats = &self.stats;
        stats.request_finished(exchange.outcome, duration);
        stats.top().record(&exchange.seen());
        if let Some(rule) = &exchange.rule {
            let action = match exchange.outcome {
                Outcome::Blocked => RuleAction::Deny,
                Outcome::AuthFailed => RuleAction::AuthRequired,
                _ => RuleAction::Allow,
            };
            stats.rule_decided(rule, action);
        }
        if !exchange.relayed {
            stats.add_bytes_from_client(exchange.bytes_from_client);
            stats.add_bytes_to_client(exchange.bytes_to_client);
            stats.add_bytes_to_origin(exchange.bytes_to_origin);
            stats.add_bytes_from_origin(exchange.bytes_from_origin);
        }
        tracing::debug!(
            client = %exchange.client,
            target = %exchange.target,
            status = exchange.status,
            outcome = exchange.outcome.label(),
            failure = exchange.failure.unwrap_or("-"),
            "exchange done"
        );
        if let Some(log) = &self.access_log {
            // The exchange ends here: its strings move into the record.
            log.write(&AccessRecord {
                start: exchange.wall_start,
                duration,
                client: exchange.client,
                user: exchange.user,
                method: exchange.method,
                target: exchange.target,
                status: exchange.status,
                bytes_to_client: exchange.bytes_to_client,
                bytes_from_client: exchange.bytes_from_client,
                cache: exchange.cache,
                upstream: exchange.upstream,
                hierarchy: exchange.hierarchy,
                parent: exchange.parent,
                outcome: exchange.outcome,
                rule: exchange.rule,
            });
        }
    }

    /// Marks the exchange as relayed from here on (a tunnel or an upgrade): the bytes so
    /// far are counted now, [`Context::relay`] counts the rest as they move.
    pub fn begin_relay(&self, exchange: &mut Exchange) {
        self.stats.add_bytes_from_client(exchange.bytes_from_client);
        self.stats.add_bytes_to_client(exchange.bytes_to_client);
        self.stats.add_bytes_from_origin(exchange.bytes_from_origin);
        self.stats.add_bytes_to_origin(exchange.bytes_to_origin);
        exchange.relayed = true;
    }

    /// Relays a tunnel or an upgraded connection with live statistics, paced by the
    /// user's bandwidth when `pacer` is given, and adds the bytes each way to the
    /// exchange's record.
    pub async fn relay(
        &self,
        client: &mut ClientStream,
        client_early: Bytes,
        upstream: &mut UpstreamStream,
        upstream_early: Bytes,
        pacer: Option<&Pacer>,
        exchange: &mut Exchange,
    ) -> tunnel::End {
        let count = |direction, bytes| self.count_relayed(direction, bytes);
        let idle = self.config.timeouts.idle;
        let (totals, end) = tunnel::relay(
            client,
            client_early,
            upstream,
            upstream_early,
            idle,
            &count,
            pacer,
        )
        .await;
        exchange.bytes_from_client += totals.client_to_upstream;
        exchange.bytes_to_origin += totals.client_to_upstream;
        exchange.bytes_from_origin += totals.upstream_to_client;
        exchange.bytes_to_client += totals.upstream_to_client;
        end
    }

    /// Live statistics for a relay: bytes each way, as they move.
    fn count_relayed(&self, direction: Direction, bytes: u64) {
        match direction {
            Direction::ToUpstream => {
                self.stats.add_bytes_from_client(bytes);
                self.stats.add_bytes_to_origin(bytes);
            }
            Direction::ToClient => {
                self.stats.add_bytes_from_origin(bytes);
                self.stats.add_bytes_to_client(bytes);
            }
        }
    }

    /// Whether the server is draining: responses then close their connections.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.started.load(Ordering::Acquire)
    }

    /// Starts the drain: later checks see it, and every waiter made before now wakes.
    pub fn begin_shutdown(&self) {
        self.shutdown.started.store(true, Ordering::Release);
        self.shutdown.wake.notify_waiters();
    }

    /// Completes at [`begin_shutdown`](Self::begin_shutdown), if that comes after this
    /// call; check [`shutting_down`](Self::shutting_down) after making it.
    pub fn shutdown_wake(&self) -> Notified<'_> {
        self.shutdown.wake.notified()
    }
}

/// What the client connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// One request or tunnel as the access log will show it; the connection path fills it
/// in as it goes. Byte counts include heads and framing.
#[derive(Debug)]
pub struct Exchange {
    pub started: Instant,
    pub wall_start: SystemTime,
    pub client: SocketAddr,
    /// The authenticated user, when authentication is on.
    pub user: Option<String>,
    pub method: String,
    pub target: String,
    /// `host:port` as the client named it, for the top lists; `None` until parsed.
    pub destination: Option<String>,
    pub status: u16,
    pub response_started: bool,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    pub bytes_to_origin: u64,
    pub bytes_from_origin: u64,
    pub upstream: Option<SocketAddr>,
    /// How `upstream` was reached (Squid's hierarchy code).
    pub hierarchy: &'static str,
    /// The parent proxy it went through, if any.
    pub parent: Option<Arc<str>>,
    pub cache: CacheResult,
    pub outcome: Outcome,
    /// The error's label when the exchange failed.
    pub failure: Option<&'static str>,
    /// The policy rule that decided (allowed or refused) the exchange, as logs name it.
    pub rule: Option<Arc<str>>,
    /// The allowing rule's own limits (everyone's are in the access snapshot).
    pub limits: Option<Arc<LimitSettings>>,
    /// What admission left to the destination's addresses; the dialer settles it.
    pub addresses: Option<AddressCheck>,
    /// Whether a relay (tunnel or upgrade) carried it; the relay counts its bytes into
    /// the statistics as they move, so they are not added again at the end.
    pub relayed: bool,
}

impl Exchange {
    /// An exchange for `target`, shown in the log as `url` where the front end has one
    /// (a plain HTTP request), else as `host:port`.
    pub fn start(
        client: SocketAddr,
        method: &str,
        target: &Target<'_>,
        url: Option<String>,
        started: Instant,
    ) -> Exchange {
        let target_text = url.unwrap_or_else(|| target.authority());
        let mut exchange = Exchange::named(client, started, method.to_string(), target_text);
        exchange.destination = Some(target.authority());
        exchange
    }

    /// What the top lists count of it.
    fn seen(&self) -> Seen<'_> {
        let reason = match (&self.rule, self.failure) {
            (Some(rule), _) => Detail::Rule(Arc::clone(rule)),
            (None, Some(label)) => Detail::Label(label),
            (None, None) => Detail::None,
        };
        Seen {
            destination: self.destination.as_deref(),
            user: self.user.as_deref(),
            client: self.client.ip().to_canonical(),
            outcome: self.outcome,
            status: self.status,
            bytes: self.bytes_to_client.saturating_add(self.bytes_from_client),
            reason,
        }
    }

    /// Notes the upstream connection the exchange goes over.
    pub fn connected(&mut self, link: &Link) {
        self.upstream = Some(link.peer);
        self.hierarchy = link.route.squid_code();
        self.parent = link.route.parent().cloned();
        if let Some(settled) = &link.settled {
            self.rule.clone_from(&settled.rule);
            self.limits.clone_from(&settled.limits);
        }
    }

    /// A request whose head could not be read: no method or target to show.
    pub fn unparsed(client: SocketAddr, started: Instant) -> Exchange {
        Exchange::named(client, started, "-".to_string(), "-".to_string())
    }

    fn named(client: SocketAddr, started: Instant, method: String, target: String) -> Exchange {
        Exchange {
            started,
            wall_start: SystemTime::now(),
            client,
            user: None,
            method,
            target,
            destination: None,
            status: 0,
            response_started: false,
            bytes_to_client: 0,
            bytes_from_client: 0,
            bytes_to_origin: 0,
            bytes_from_origin: 0,
            upstream: None,
            hierarchy: "HIER_NONE",
            parent: None,
            cache: CacheResult::None,
            outcome: Outcome::Allowed,
            failure: None,
            rule: None,
            limits: None,
            addresses: None,
            relayed: false,
        }
    }
}
