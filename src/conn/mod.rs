//! The exchange pipeline: everything a request or a tunnel goes through between a front
//! end's parser and its answer writer, whatever the protocol. A front end reads its
//! protocol, states the [`Target`](crate::target::Target) and the credentials, and asks
//! [`Context::admit`] (an address blocked for failed logins, the access decision, the
//! user's limits); a tunnel then goes through [`Context::tunnel`] (dial, the front end's
//! yes, the relay with live counts), a plain HTTP request through the forwarder, which
//! uses the same dialer and relay. A failure is noted once ([`Exchange::failed`]: the
//! outcome, the rule, the status) and answered by the front end in its own terms; every
//! exchange is [`Context::recorded`]: one access-log line and its statistics, written
//! however it ends.
//!
//! The front end's side of the contract is [`FrontEnd`]: where the client is, how to say
//! yes to a tunnel, how to refuse, and what the client sent early. HTTP/1.1
//! (`http_proxy`) and SOCKS5 (`socks`) implement it; docs/architecture.md draws it.
//!
//! Also here: what connection tasks share (settings, access state, dialer and pool,
//! cache, statistics, access log, the drain signal) and how it is built ([`Services`]).

mod exchange;
mod hello;
mod pipeline;
mod services;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::access::AccessControl;
use crate::cache::Cache;
use crate::client::ListenerId;
use crate::config::{Config, Listener};
use crate::cut::Cut;
use crate::limits::Limiter;
use crate::logging::AccessLog;
use crate::pac_file::PacFile;
use crate::stats::Stats;
use crate::upstream::{Connector, Dialer, Routes};
pub use exchange::{Exchange, Next, Stage};
pub use pipeline::{Admitted, FrontEnd};
pub use services::Services;

/// What every connection task of a server shares.
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
    /// The end of the grace: relays still running stop and are recorded.
    cut: Cut,
}

impl Context {
    pub fn new(config: Config, services: Services) -> Context {
        let listening = config.listeners.iter().map(|l| l.addr);
        let listening = listening.chain(services.metrics_addr).collect();
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

    /// Whether the server is draining: responses then close their connections.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.started.load(Ordering::Acquire)
    }

    /// Starts the drain: later checks see it, and every waiter made before now wakes.
    pub fn begin_shutdown(&self) {
        self.shutdown.started.store(true, Ordering::Release);
        self.shutdown.wake.notify_waiters();
    }

    /// The grace is over: relays still running end (`tunnel::End::Shutdown`), and their
    /// exchanges are recorded as cut ([`crate::cut::LABEL`]) with the bytes they carried.
    pub fn cut_relays(&self) {
        self.shutdown.cut.start();
    }

    /// Completes at [`begin_shutdown`](Self::begin_shutdown), if that comes after this
    /// call; check [`shutting_down`](Self::shutting_down) after making it.
    pub fn shutdown_wake(&self) -> Notified<'_> {
        self.shutdown.wake.notified()
    }
}
