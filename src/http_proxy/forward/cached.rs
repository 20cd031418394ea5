//! The forwarding path's side of the response cache: what a lookup means for this
//! exchange (serve a hit, fetch and store, revalidate, invalidate, or leave the cache
//! out), the request fields a revalidation adds, and what a response does to the cache.

use std::time::SystemTime;

use crate::cache::{
    Cache, CacheRequest, CacheResponse, Filler, Hit, Lookup, Miss, Revalidation, Timing, UriKey,
};
use crate::http::{BodyLength, Headers, RequestHead, RequestTarget, ResponseHead, rewrite};
use crate::stats::{CacheTotals, Stats};

/// What the cache decided before anything went to the origin.
pub enum Decision<'a> {
    /// No cache, or a request it does not apply to.
    Bypass,
    Hit(Hit),
    /// `only-if-cached` and nothing stored: 504 (RFC 9111 §5.2.1.7).
    NotCached,
    Fetch(Plan<'a>),
}

/// A fetch the cache takes part in.
pub struct Plan<'a> {
    cache: &'a Cache,
    request: CacheRequest<'a>,
    step: Step,
}

enum Step {
    /// Store the response if it may be stored; concurrent misses wait on this one.
    Fill(Miss),
    /// The stored response is stale: ask with its validators; a 304 refreshes it.
    Revalidate(Revalidation),
    /// An unsafe method: a successful answer drops what is stored for the URI.
    Invalidate,
}

/// What a response from the origin did to the cache.
pub enum Outcome {
    /// A 304 refreshed the stored response: serve it (`None`: the 304 did not match it).
    Refreshed(Option<Hit>),
    /// Forward the response; copy its body into the filler, if any, as it streams.
    Forward(Option<Box<Filler>>),
}

/// Looks the request up. A request with a body (a GET with content, a POST) never reads
/// from the cache; unsafe methods invalidate.
pub async fn decide<'a>(
    cache: Option<&'a Cache>,
    head: &'a RequestHead,
    length: BodyLength,
    stats: &Stats,
) -> Decision<'a> {
    let (Some(cache), RequestTarget::Absolute { host, port, path }) = (cache, &head.target) else {
        return Decision::Bypass;
    };
    let request = CacheRequest {
        method: head.method_str(),
        uri: UriKey::new("http", host, *port, path),
        headers: &head.headers,
    };
    if length != BodyLength::Empty && head.is_method("GET") {
        return Decision::Bypass;
    }
    let lookup = cache.lookup(&request, SystemTime::now()).await;
    sync_stats(cache, stats);
    let step = match lookup {
        Lookup::Fresh(hit) => return Decision::Hit(hit),
        Lookup::GatewayTimeout => return Decision::NotCached,
        Lookup::Miss(miss) => Step::Fill(miss),
        Lookup::Stale(revalidation) => Step::Revalidate(revalidation),
        Lookup::Uncacheable => Step::Invalidate,
    };
    Decision::Fetch(Plan {
        cache,
        request,
        step,
    })
}

impl Plan<'_> {
    /// The request fields to send instead of the client's, for a revalidation.
    pub fn revalidation_headers(&self, head: &RequestHead) -> Option<Headers> {
        let Step::Revalidate(revalidation) = &self.step else {
            return None;
        };
        let mut headers = head.headers.clone();
        revalidation.apply_validators(&mut headers);
        Some(headers)
    }

    /// Applies the origin's answer to the cache.
    pub fn on_response(self, response: &ResponseHead, timing: Timing, stats: &Stats) -> Outcome {
        let cache = self.cache;
        let stored = CacheResponse {
            status: response.status,
            reason: &response.reason,
            headers: &response.headers,
        };
        // A body still carrying a transfer coding such as gzip would be stored decoded of
        // its chunking only, and served without the coding named: not stored.
        let storable = rewrite::other_codings(&response.headers).is_empty();
        let outcome = match self.step {
            Step::Revalidate(revalidation) if response.status == 304 => Outcome::Refreshed(
                cache.refresh(&self.request, revalidation, &response.headers, timing),
            ),
            Step::Revalidate(revalidation) => {
                let miss = revalidation.into_miss();
                let filler =
                    storable.then(|| cache.begin_fill(&self.request, miss, &stored, timing));
                Outcome::Forward(filler.flatten().map(Box::new))
            }
            Step::Fill(miss) => {
                let filler =
                    storable.then(|| cache.begin_fill(&self.request, miss, &stored, timing));
                Outcome::Forward(filler.flatten().map(Box::new))
            }
            Step::Invalidate => {
                cache.invalidate(&self.request, response.status, &response.headers);
                Outcome::Forward(None)
            }
        };
        sync_stats(cache, stats);
        outcome
    }
}

/// Stores a completely received body; returns whether the cache kept it.
pub fn finish(filler: Option<Box<Filler>>, cache: Option<&Cache>, stats: &Stats) -> bool {
    let stored = filler.is_some_and(|filler| filler.finish());
    if let Some(cache) = cache {
        sync_stats(cache, stats);
    }
    stored
}

fn sync_stats(cache: &Cache, stats: &Stats) {
    let totals = cache.stats().snapshot();
    stats.set_cache(CacheTotals {
        hits: totals.hits,
        misses: totals.misses,
        evictions: totals.evictions,
        bytes_held: totals.bytes,
        entries: totals.entries,
    });
}
