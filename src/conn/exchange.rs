//! The record of one exchange: notes the pipeline and the front end fill in as it goes
//! (stage reached, timings, bytes, user, rule, how it failed), turned at the end into one
//! access-log line and its statistics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Context;
use super::pipeline::outcome_of;
use crate::cut;
use crate::error::{ProxyError, Side};
use crate::logging::{AccessRecord, CacheResult};
use crate::stats::top::Detail;
use crate::stats::{Outcome, RuleAction, Seen};
use crate::target::Target;
use crate::upstream::Link;

impl Context {
    /// Starts the record of `exchange`, written however the exchange ends (see
    /// [`Recorded`]).
    pub fn recorded(&self, exchange: Exchange) -> Recorded<'_> {
        Recorded {
            ctx: self,
            exchange,
            written: false,
        }
    }

    /// Counts a finished exchange and writes its access-log line; the exchange's strings
    /// move into the record.
    fn write_record(&self, exchange: &mut Exchange) {
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
            stage = exchange.stage.label(),
            "exchange done"
        );
        if let Some(log) = &self.access_log {
            log.write(&AccessRecord {
                start: exchange.wall_start,
                duration,
                client: exchange.client,
                user: exchange.user.take(),
                method: std::mem::take(&mut exchange.method),
                target: std::mem::take(&mut exchange.target),
                status: exchange.status,
                bytes_to_client: exchange.bytes_to_client,
                bytes_from_client: exchange.bytes_from_client,
                cache: exchange.cache,
                upstream: exchange.upstream,
                hierarchy: exchange.hierarchy,
                parent: exchange.parent.take(),
                cut: exchange.failure == Some(cut::LABEL),
                outcome: exchange.outcome,
                rule: exchange.rule.take(),
                sni: exchange.sni.take(),
                alpn: exchange.alpn.take(),
            });
        }
    }
}

/// An exchange whose record is written however it ends: by [`Recorded::finish`] on its
/// normal path; dropped unfinished — its task cut when the runtime stops at the end of
/// the shutdown grace, or unwound by a panic — it is recorded then, as cut short
/// (Squid's `_ABORTED`), with what it carried until then. Nothing is lost but an
/// exchange for which nothing at all was read.
pub struct Recorded<'a> {
    ctx: &'a Context,
    exchange: Exchange,
    written: bool,
}

impl Recorded<'_> {
    /// Writes the record of an exchange that ended on its own.
    pub fn finish(mut self) {
        self.written = true;
        self.ctx.write_record(&mut self.exchange);
    }

    /// Drops an exchange that is not one (a connection that said nothing).
    pub fn discard(mut self) {
        self.written = true;
    }
}

impl std::ops::Deref for Recorded<'_> {
    type Target = Exchange;

    fn deref(&self) -> &Exchange {
        &self.exchange
    }
}

impl std::ops::DerefMut for Recorded<'_> {
    fn deref_mut(&mut self) -> &mut Exchange {
        &mut self.exchange
    }
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        let exchange = &mut self.exchange;
        if self.written || (exchange.bytes_from_client == 0 && exchange.stage == Stage::Request) {
            return;
        }
        exchange.failure = Some(if std::thread::panicking() {
            "panic"
        } else {
            cut::LABEL
        });
        self.ctx.write_record(exchange);
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
    /// Whether a relay (tunnel or upgrade) carried it; the relay counts its bytes into
    /// the statistics as they move, so they are not added again at the end.
    pub relayed: bool,
    /// How far it got: where a failure happened, for diagnostics.
    pub stage: Stage,
    /// A tunnel's TLS server name and offered protocols, from its ClientHello.
    pub sni: Option<Box<str>>,
    pub alpn: Option<Box<str>>,
}

/// The steps of an exchange, in order; the last one reached is where it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the request (the head, or a SOCKS5 negotiation).
    Request,
    /// Admission: the access decision and the user's limits.
    Admission,
    /// Resolving, checking and connecting toward the target.
    Dial,
    /// Bytes moving: the relay of a tunnel, or a forwarded request and its response.
    Transfer,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Admission => "admission",
            Stage::Dial => "dial",
            Stage::Transfer => "transfer",
        }
    }
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

    /// Notes a failure: its label, the rule that refused (wherever it was asked:
    /// admission or the dialer), the statistics bucket and the status the log shows.
    /// Returns whether the client is still owed an answer: not when a response was
    /// already under way (the client saw it as forwarded), nor for an I/O failure.
    pub fn failed(&mut self, error: &ProxyError) -> bool {
        self.failure = Some(error.brief());
        if let Some(rule) = error.rule() {
            self.rule = Some(rule.clone());
        }
        if self.response_started {
            if matches!(
                error,
                ProxyError::Io(Side::Upstream, _) | ProxyError::BadResponse(_)
            ) {
                self.outcome = Outcome::UpstreamError;
            }
            return false;
        }
        self.outcome = outcome_of(error);
        match error.status() {
            Some(status) => {
                self.status = status;
                true
            }
            None => false,
        }
    }

    /// Notes the upstream connection the exchange goes over.
    pub fn connected(&mut self, link: &Link) {
        self.stage = Stage::Transfer;
        self.upstream = Some(link.peer);
        self.hierarchy = link.route.squid_code();
        self.parent = link.route.parent().cloned();
        if let Some(settled) = &link.settled {
            self.rule.clone_from(&settled.rule);
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
            relayed: false,
            stage: Stage::Request,
            sni: None,
            alpn: None,
        }
    }
}
