//! The shared response cache (RFC 9111): flags, and the [`Cache`] handle the forwarding
//! path asks before going to the origin and tells what came back. It owns what is stored
//! and when a stored response may answer a request; it never touches a socket, and it
//! needs nothing from the forwarding path beyond method, URI parts, fields and bytes.
//!
//! The forwarding path's use of it, per request:
//! 1. [`Cache::lookup`] → [`Lookup::Fresh`]: write [`Hit::render_head`] and [`Hit::body`].
//! 2. [`Lookup::Stale`]: add [`Revalidation::apply_validators`] to the upstream request;
//!    on a 304, [`Cache::refresh`] gives the hit to write; otherwise continue as a miss
//!    with [`Revalidation::into_miss`].
//! 3. [`Lookup::Miss`]: forward; [`Cache::begin_fill`] with the response head; while the
//!    body streams to the client, [`Filler::push`] each piece; [`Filler::finish`] once
//!    the body is complete. Add `X-Cache: MISS` ([`miss_field`]) to the response head.
//! 4. [`Lookup::GatewayTimeout`]: answer 504 (`only-if-cached`, RFC 9111 §5.2.1.7).
//! 5. Any other method: forward, then [`Cache::invalidate`] with the response status.

mod directives;
mod fill;
mod flight;
mod key;
mod policy;
mod response;
mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use crate::http::{Header, Headers};

pub use fill::Filler;
pub use flight::DEFAULT_FLIGHT_WAIT;
pub use key::UriKey;
pub use policy::NotStorable;
pub use response::{HIT, Hit, MISS, X_CACHE};
pub use store::{ENTRY_OVERHEAD, MAX_VARIANTS, Stats, StatsSnapshot};

use directives::RequestDirectives;
use flight::{FlightGuard, Flights, Join};
use key::VarySelector;
use policy::Freshness;
use store::{Entry, Store};

/// Default of `--cache-size`, in MiB.
pub const DEFAULT_CACHE_SIZE_MIB: u64 = 64;
/// Default of `--cache-max-object`, in KiB: 8 MiB keeps one object at an eighth of the
/// default cache, so one large download cannot flush everything else.
pub const DEFAULT_CACHE_MAX_OBJECT_KIB: u64 = 8192;

/// Response cache flags.
/// How big the cache may grow, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most memory the stored responses may take, heads and bodies counted.
    pub capacity: usize,
    /// Largest single response stored; larger ones are streamed but not stored.
    pub max_object: usize,
}

/// The request as the cache sees it.
#[derive(Debug, Clone)]
pub struct CacheRequest<'a> {
    /// The method as sent (case-sensitive, RFC 9110 §9.1).
    pub method: &'a str,
    pub uri: UriKey,
    pub headers: &'a Headers,
}

/// The response head as the cache sees it.
#[derive(Debug, Clone, Copy)]
pub struct CacheResponse<'a> {
    pub status: u16,
    pub reason: &'a [u8],
    pub headers: &'a Headers,
}

/// When an exchange with the origin happened (RFC 9111 §4.2.3 `request_time` and
/// `response_time`): just before the request was written, and when its head arrived.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// What the cache can do for a request.
#[derive(Debug)]
pub enum Lookup {
    /// A stored response answers it; write it and do not contact the origin.
    Fresh(Hit),
    /// A stored response needs validation with the origin first.
    Stale(Revalidation),
    /// Nothing usable stored: forward, and fill if the response is storable.
    Miss(Miss),
    /// `only-if-cached` and nothing fresh: answer 504 (RFC 9111 §5.2.1.7).
    GatewayTimeout,
    /// The method is neither GET nor HEAD: forward, then [`Cache::invalidate`].
    Uncacheable,
}

/// A miss; if it holds the single-flight lead, concurrent misses on the URI wait for it
/// until the [`Filler`] made from it finishes or drops (or this is dropped).
#[derive(Debug, Default)]
pub struct Miss {
    flight: Option<FlightGuard>,
}

/// A stale stored response and what to send the origin to validate it.
#[derive(Debug)]
pub struct Revalidation {
    entry: Arc<Entry>,
}

impl Revalidation {
    /// Replaces the client's `If-None-Match` / `If-Modified-Since` (if any) with the
    /// stored response's validators (RFC 9111 §4.3.1), so that a 304 from the origin
    /// is about the stored response. The client's other fields are left alone.
    pub fn apply_validators(&self, request: &mut Headers) {
        request.remove("if-none-match");
        request.remove("if-modified-since");
        for field in policy::validators(&self.entry.headers) {
            request.push(field);
        }
    }

    /// The origin answered with a full response: treat it as a miss (no single-flight
    /// lead; the stale entry stays until the new response replaces it).
    pub fn into_miss(self) -> Miss {
        Miss::default()
    }
}

/// The cache handle: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Cache {
    store: Arc<Store>,
    flights: Arc<Flights>,
    flight_wait: Duration,
}

impl Cache {
    /// A cache of `capacity` bytes storing no entry over `max_object` bytes, where
    /// concurrent misses wait up to `flight_wait` for the first one.
    pub fn new(capacity: usize, max_object: usize, flight_wait: Duration) -> Cache {
        Cache {
            store: Arc::new(Store::new(capacity, max_object)),
            flights: Arc::new(Flights::default()),
            flight_wait,
        }
    }

    /// The cache the flags ask for, or `None` without `--cache`.
    /// A cache of the given size, with the default flight wait.
    pub fn with_settings(settings: &CacheSettings) -> Cache {
        Cache::new(settings.capacity, settings.max_object, DEFAULT_FLIGHT_WAIT)
    }

    pub fn stats(&self) -> &Stats {
        self.store.stats()
    }

    /// Finds what the cache can do for `request` at `now`. May wait (at most the flight
    /// wait) while another request for the same URI is being fetched.
    pub async fn lookup(&self, request: &CacheRequest<'_>, now: SystemTime) -> Lookup {
        if !matches!(request.method, "GET" | "HEAD") {
            return Lookup::Uncacheable;
        }
        let directives = RequestDirectives::parse(request.headers);
        if let Some(found) = self.find(request, &directives, now) {
            return found;
        }
        if directives.only_if_cached {
            return Lookup::GatewayTimeout;
        }
        // A HEAD response is not stored, so a HEAD miss leads no flight.
        let flight = match request.method {
            "GET" => self.flights.join(&request.uri),
            _ => return self.miss(None),
        };
        let follower = match flight {
            Join::Leader(guard) => return self.lead(request, &directives, now, guard),
            Join::Follower(follower) => follower,
        };
        let started = Instant::now();
        follower.wait(self.flight_wait).await;
        let now = now + started.elapsed();
        if let Some(found) = self.find(request, &directives, now) {
            return found;
        }
        // The leader stored nothing usable for us: fetch, leading if nobody else is.
        match self.flights.join(&request.uri) {
            Join::Leader(guard) => self.lead(request, &directives, now, guard),
            Join::Follower(_) => self.miss(None),
        }
    }

    /// Becomes the fetcher for a URI, unless a response arrived in the meantime: a
    /// leader stores before it releases its flight, so one that finished between our
    /// first look and our joining is visible now, and fetching again would be wasted.
    fn lead(
        &self,
        request: &CacheRequest<'_>,
        directives: &RequestDirectives,
        now: SystemTime,
        guard: FlightGuard,
    ) -> Lookup {
        match self.find(request, directives, now) {
            Some(found) => found,
            None => self.miss(Some(guard)),
        }
    }

    /// A stored response for the request, fresh or to be revalidated.
    fn find(
        &self,
        request: &CacheRequest<'_>,
        directives: &RequestDirectives,
        now: SystemTime,
    ) -> Option<Lookup> {
        let entry = self.store.get(&request.uri, request.headers)?;
        if policy::may_serve_fresh(&entry.freshness, directives, now) {
            self.stats().hits.fetch_add(1, Relaxed);
            return Some(Lookup::Fresh(Hit::new(
                entry,
                request.method,
                request.headers,
                now,
            )));
        }
        if directives.only_if_cached {
            return Some(Lookup::GatewayTimeout);
        }
        self.stats().misses.fetch_add(1, Relaxed);
        Some(Lookup::Stale(Revalidation { entry }))
    }

    fn miss(&self, flight: Option<FlightGuard>) -> Lookup {
        self.stats().misses.fetch_add(1, Relaxed);
        Lookup::Miss(Miss { flight })
    }

    /// Starts copying a response to a miss, if RFC 9111 lets it be stored and its
    /// declared length fits; `None` otherwise (the single-flight lead is then released).
    pub fn begin_fill(
        &self,
        request: &CacheRequest<'_>,
        miss: Miss,
        response: &CacheResponse<'_>,
        timing: Timing,
    ) -> Option<Filler> {
        let why_not = policy::check_storable(
            request.method,
            request.headers,
            response.status,
            response.headers,
        );
        if let Err(reason) = why_not {
            tracing::debug!(?reason, "response not stored");
            return None;
        }
        let vary = VarySelector::from_response(response.headers, request.headers)?;
        let freshness = Freshness::new(
            response.status,
            response.headers,
            timing.request_time,
            timing.response_time,
        );
        let has_validator =
            response.headers.contains("etag") || response.headers.contains("last-modified");
        if freshness.lifetime.is_zero() && !has_validator {
            tracing::debug!(reason = ?NotStorable::NeverReusable, "response not stored");
            return None;
        }
        let entry = Entry {
            status: response.status,
            reason: bytes::Bytes::copy_from_slice(response.reason),
            headers: policy::fields_to_store(response.headers, timing.response_time),
            body: bytes::Bytes::new(),
            vary,
            freshness,
        };
        let expected = response
            .headers
            .get_str("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        Filler::new(
            Arc::clone(&self.store),
            request.uri.clone(),
            entry,
            expected,
            miss.flight,
        )
    }

    /// Applies a 304 received for a [`Revalidation`] (RFC 9111 §4.3.4) and returns the
    /// response to send the client. `None` when the 304 does not match the stored
    /// response's validators: then forward the request again without conditionals.
    pub fn refresh(
        &self,
        request: &CacheRequest<'_>,
        revalidation: Revalidation,
        not_modified: &Headers,
        timing: Timing,
    ) -> Option<Hit> {
        let old = revalidation.entry;
        if !policy::not_modified_matches(&old.headers, not_modified) {
            return None;
        }
        let headers = policy::merge_not_modified(&old.headers, not_modified);
        let freshness = Freshness::after_not_modified(
            old.status,
            &headers,
            not_modified,
            timing.request_time,
            timing.response_time,
        );
        let entry = Entry {
            status: old.status,
            reason: old.reason.clone(),
            headers,
            body: old.body.clone(),
            vary: old.vary.clone(),
            freshness,
        };
        let storable = policy::check_storable("GET", request.headers, entry.status, &entry.headers);
        let entry = Arc::new(entry);
        if storable.is_ok() {
            self.store.insert(request.uri.clone(), Arc::clone(&entry));
        } else {
            self.store.remove(&request.uri);
        }
        self.stats().revalidations.fetch_add(1, Relaxed);
        Some(Hit::new(
            entry,
            request.method,
            request.headers,
            timing.response_time,
        ))
    }

    /// Invalidation after an unsafe request (RFC 9111 §4.4): a non-error response to a
    /// method other than GET, HEAD, OPTIONS or TRACE drops the target URI and the
    /// same-origin URIs in `Location` and `Content-Location`.
    pub fn invalidate(&self, request: &CacheRequest<'_>, status: u16, response: &Headers) {
        if matches!(request.method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
            || !(200..400).contains(&status)
        {
            return;
        }
        self.store.remove(&request.uri);
        for name in ["location", "content-location"] {
            if let Some(other) = response
                .get(name)
                .and_then(|v| request.uri.same_origin_reference(v))
            {
                self.store.remove(&other);
            }
        }
    }
}

/// `X-Cache: MISS`, for responses that came from the origin.
pub fn miss_field() -> Header {
    Header::new(X_CACHE, MISS)
}

#[cfg(test)]
mod tests;
