//! The RFC 9111 rules of a shared cache, as pure functions of headers and explicit
//! times: whether a response may be stored (§3), its freshness lifetime (§4.2.1, §4.2.2)
//! and age (§4.2.3), whether a stored response may be reused for a request (§4, §5.2.1),
//! the validators to revalidate it with (§4.3.1), and how a 304 updates it (§3.2, §4.3.4).
//! No I/O, no clock: every time comes in as an argument so tests can use fixed instants.

use std::time::{Duration, SystemTime};

use crate::http::{Header, Headers};

use super::directives::{
    RequestDirectives, ResponseDirectives, delta_seconds, format_http_date, http_date,
};
use super::key::VarySelector;

/// RFC 9110 §15.1: status codes whose responses are heuristically cacheable.
const HEURISTICALLY_CACHEABLE: &[u16] =
    &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Status codes whose semantics this cache understands for `must-understand`
/// (RFC 9111 §5.2.2.3): the final statuses of RFC 9110 §15 it can serve whole.
const UNDERSTOOD: &[u16] = &[
    200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 451, 500, 501, 502,
    503, 504,
];

/// The heuristic freshness is this fraction (1/N) of the time since Last-Modified
/// (RFC 9111 §4.2.2 suggests 10%).
const HEURISTIC_DIVISOR: u32 = 10;

/// Fields never stored or served from the cache: hop-by-hop fields (RFC 9110 §7.6.1,
/// RFC 9111 §3.1), framing that the cache recomputes from the stored body, and the
/// fields this cache generates itself on every hit.
const NOT_STORED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "content-length",
    "age",
    "x-cache",
];

/// Why a response is not stored; the label goes to debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only GET responses are stored (RFC 9111 §3: the method must be cacheable and
    /// understood; HEAD and POST responses are not worth the complexity).
    Method,
    /// Not a final status, a partial (206) or 304 response, or `must-understand` on a
    /// status not understood (§3, §5.2.2.3).
    Status,
    /// `no-store` in the request or the response (§5.2.1.5, §5.2.2.5).
    NoStore,
    /// `private`: a shared cache must not store it (§5.2.2.7).
    Private,
    /// The request had `Authorization` and the response did not allow sharing (§3.5).
    Authorization,
    /// `Vary: *` never matches a later request (§4.1).
    VaryStar,
    /// No explicit freshness, not heuristically cacheable, not `public` (§3).
    NoFreshness,
    /// Stale from the start and without a validator: it could never be reused.
    NeverReusable,
}

/// Checks RFC 9111 §3 for a response to `method` with request fields `request`.
pub fn check_storable(
    method: &str,
    request: &Headers,
    status: u16,
    response: &Headers,
) -> Result<(), NotStorable> {
    let directives = ResponseDirectives::parse(response);
    if method != "GET" {
        return Err(NotStorable::Method);
    }
    if !(200..=599).contains(&status) || status == 206 || status == 304 {
        return Err(NotStorable::Status);
    }
    if RequestDirectives::parse(request).no_store {
        return Err(NotStorable::NoStore);
    }
    if directives.must_understand {
        // §5.2.2.3: must-understand overrides no-store when the status is understood.
        if !UNDERSTOOD.contains(&status) {
            return Err(NotStorable::Status);
        }
    } else if directives.no_store {
        return Err(NotStorable::NoStore);
    }
    if directives.private {
        return Err(NotStorable::Private);
    }
    let shareable =
        directives.public || directives.s_maxage.is_some() || directives.must_revalidate;
    if request.contains("authorization") && !shareable {
        return Err(NotStorable::Authorization);
    }
    if VarySelector::from_response(response, request).is_none() {
        return Err(NotStorable::VaryStar);
    }
    let explicit = response.contains("expires")
        || directives.max_age.is_some()
        || directives.s_maxage.is_some();
    if !(explicit || directives.public || HEURISTICALLY_CACHEABLE.contains(&status)) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// What the cache remembers about a stored response to judge its freshness later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (§4.2.1).
    pub lifetime: Duration,
    /// `corrected_initial_age` of §4.2.3, fixed when the response arrived.
    pub initial_age: Duration,
    /// When the response arrived (`response_time` of §4.2.3).
    pub response_time: SystemTime,
    /// Response `no-cache` (§5.2.2.4): every reuse needs a successful validation.
    pub no_cache: bool,
}

impl Freshness {
    /// Computes freshness for a response requested at `request_time` and received at
    /// `response_time`.
    pub fn new(
        status: u16,
        response: &Headers,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Freshness {
        let directives = ResponseDirectives::parse(response);
        Freshness {
            lifetime: lifetime(status, response, &directives, response_time),
            initial_age: initial_age(response, request_time, response_time),
            response_time,
            no_cache: directives.no_cache,
        }
    }

    /// Freshness of a stored response that a 304 received at `response_time` has just
    /// validated: the lifetime from the merged fields, the age from the 304 itself, since
    /// the stored `Age` and `Date` described the earlier response (§4.3.4).
    pub fn after_not_modified(
        status: u16,
        merged: &Headers,
        not_modified: &Headers,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Freshness {
        Freshness {
            initial_age: initial_age(not_modified, request_time, response_time),
            ..Freshness::new(status, merged, request_time, response_time)
        }
    }

    /// `current_age` of §4.2.3 at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.response_time).unwrap_or_default()
    }

    /// Whether the response is fresh at `now` (§4.2: lifetime greater than age).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }
}

/// The freshness lifetime, RFC 9111 §4.2.1: `s-maxage` (a shared cache), then
/// `max-age`, then `Expires` minus `Date`, then the §4.2.2 heuristic.
fn lifetime(
    status: u16,
    response: &Headers,
    directives: &ResponseDirectives,
    response_time: SystemTime,
) -> Duration {
    if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
        return Duration::from_secs(seconds);
    }
    // RFC 9110 §6.6.1: without a valid Date, the time of receipt stands in for it.
    let date = response
        .get("date")
        .and_then(|d| http_date(d))
        .unwrap_or(response_time);
    if let Some(expires) = response.get("expires") {
        // §5.3: an invalid Expires (such as "0") means already expired.
        return http_date(expires)
            .and_then(|e| e.duration_since(date).ok())
            .unwrap_or_default();
    }
    if !(directives.public || HEURISTICALLY_CACHEABLE.contains(&status)) {
        return Duration::ZERO;
    }
    response
        .get("last-modified")
        .and_then(|lm| http_date(lm))
        .and_then(|lm| date.duration_since(lm).ok())
        .map_or(Duration::ZERO, |since| since / HEURISTIC_DIVISOR)
}

/// `corrected_initial_age` of RFC 9111 §4.2.3.
fn initial_age(
    response: &Headers,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    // §5.1: an Age that is not a delta-seconds is ignored.
    let age_value = response
        .get_str("age")
        .and_then(delta_seconds)
        .map_or(Duration::ZERO, Duration::from_secs);
    let date = response
        .get("date")
        .and_then(|d| http_date(d))
        .unwrap_or(response_time);
    let apparent_age = response_time.duration_since(date).unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// Whether a matching stored response may be served for a request without contacting
/// the origin (RFC 9111 §4.2, §5.2.1). Serving stale responses is never done.
pub fn may_serve_fresh(
    freshness: &Freshness,
    request: &RequestDirectives,
    now: SystemTime,
) -> bool {
    if freshness.no_cache || request.no_cache || !freshness.is_fresh(now) {
        return false;
    }
    let age = freshness.age(now);
    match request.max_age {
        // max-age=0 is how clients ask for end-to-end revalidation; treat it exactly so
        // even within the first second, where the age would still round to 0.
        Some(0) => return false,
        Some(max) if age > Duration::from_secs(max) => return false,
        _ => {}
    }
    match request.min_fresh {
        Some(min) => freshness.lifetime.saturating_sub(age) >= Duration::from_secs(min),
        None => true,
    }
}

/// The conditional fields that revalidate a stored response (RFC 9111 §4.3.1):
/// `If-None-Match` from its ETag and `If-Modified-Since` from its Last-Modified.
pub fn validators(stored: &Headers) -> Vec<Header> {
    let mut out = Vec::new();
    if let Some(etag) = stored.get("etag") {
        out.push(Header::new("If-None-Match", etag.clone()));
    }
    if let Some(last_modified) = stored.get("last-modified") {
        out.push(Header::new("If-Modified-Since", last_modified.clone()));
    }
    out
}

/// The fields of a response as stored: everything except [`NOT_STORED`] and the fields
/// its `Connection` names (RFC 9111 §3.1).
pub fn storable_fields(response: &Headers) -> Headers {
    let named: Vec<Vec<u8>> = response
        .tokens("connection")
        .map(<[u8]>::to_ascii_lowercase)
        .collect();
    let mut out = response.clone();
    out.retain(|h| {
        !NOT_STORED.iter().any(|n| h.is(n)) && !named.iter().any(|n| h.name.eq_ignore_ascii_case(n))
    });
    out
}

/// The fields to store for a response received at `response_time`: [`storable_fields`]
/// plus a `Date` if the origin sent none (RFC 9110 §6.6.1: a recipient with a clock
/// MUST add one to a response it caches).
pub fn fields_to_store(response: &Headers, response_time: SystemTime) -> Headers {
    let mut out = storable_fields(response);
    if !out.contains("date") {
        out.append("Date", format_http_date(response_time));
    }
    out
}

/// Whether a 304 describes the stored response (RFC 9111 §4.3.4): a strong ETag must
/// match exactly, a weak one weakly; without an ETag, an equal Last-Modified. A 304
/// with no validator at all is taken as matching: it answers the conditional request
/// this cache built from that very entry.
pub fn not_modified_matches(stored: &Headers, not_modified: &Headers) -> bool {
    let weak = |t: &[u8]| {
        t.strip_prefix(b"W/")
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| t.to_vec())
    };
    let stored_etag = stored.get("etag").map(|e| e.trim_ascii());
    if let Some(new) = not_modified.get("etag").map(|e| e.trim_ascii()) {
        return match stored_etag {
            Some(old) if new.starts_with(b"W/") => weak(old) == weak(new),
            Some(old) => old == new,
            None => false,
        };
    }
    match not_modified.get("last-modified") {
        Some(new) => stored.get("last-modified").map(|o| o.trim_ascii()) == Some(new.trim_ascii()),
        None => true,
    }
}

/// The stored fields updated by a 304 (RFC 9111 §3.2): each field the 304 carries
/// replaces the stored fields of that name, except those not stored at all and
/// `Content-Length`, which describes the stored body, not the 304.
pub fn merge_not_modified(stored: &Headers, not_modified: &Headers) -> Headers {
    let update = storable_fields(not_modified);
    let mut out = stored.clone();
    out.retain(|h| !update.contains(h.name_str()));
    for field in &update {
        out.push(field.clone());
    }
    out
}

#[cfg(test)]
mod tests;
