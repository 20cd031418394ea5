//! Tests of the cache as the forwarding path drives it: lookup, fill, refresh and
//! invalidate, with explicit times instead of a clock.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use super::*;

const CAPACITY: usize = 1 << 20;
const MAX_OBJECT: usize = 64 << 10;

/// A fixed "now": 2026-01-01T00:00:00Z.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn at(seconds: u64) -> SystemTime {
    t0() + Duration::from_secs(seconds)
}

fn timing(seconds: u64) -> Timing {
    Timing {
        request_time: at(seconds),
        response_time: at(seconds),
    }
}

fn cache() -> Cache {
    Cache::new(CAPACITY, MAX_OBJECT, Duration::from_secs(2))
}

fn headers(fields: &[(&str, &str)]) -> Headers {
    fields
        .iter()
        .map(|(n, v)| Header::new(n.to_string(), v.to_string()))
        .collect()
}

fn uri(path: &str) -> UriKey {
    UriKey::new("http", "origin.test", 80, path.as_bytes())
}

fn request<'a>(method: &'a str, path: &str, headers: &'a Headers) -> CacheRequest<'a> {
    CacheRequest {
        method,
        uri: uri(path),
        headers,
    }
}

/// Looks up, expects a miss, and stores `body` as the origin's answer. Returns whether
/// it was stored.
async fn fetch(
    cache: &Cache,
    req: &CacheRequest<'_>,
    status: u16,
    response: &[(&str, &str)],
    body: &[u8],
) -> bool {
    let Lookup::Miss(miss) = cache.lookup(req, t0()).await else {
        panic!("expected a miss");
    };
    let response = headers(response);
    let head = CacheResponse {
        status,
        reason: b"OK",
        headers: &response,
    };
    let Some(mut filler) = cache.begin_fill(req, miss, &head, timing(0)) else {
        return false;
    };
    // Awkward split points, as a socket would deliver them.
    for piece in body.chunks(3) {
        filler.push(piece);
    }
    filler.finish()
}

fn body_of(lookup: Lookup) -> Option<Bytes> {
    match lookup {
        Lookup::Fresh(hit) => Some(hit.body()),
        _ => None,
    }
}

use bytes::Bytes;

#[tokio::test]
async fn hit_after_miss() {
    let cache = cache();
    let none = Headers::new();
    let get = request("GET", "/a", &none);
    assert!(
        fetch(
            &cache,
            &get,
            200,
            &[("cache-control", "max-age=60")],
            b"hello world"
        )
        .await
    );
    let Lookup::Fresh(hit) = cache.lookup(&get, at(5)).await else {
        panic!("expected a hit");
    };
    assert_eq!(&hit.body()[..], b"hello world");
    let head = String::from_utf8(hit.render_head(&Headers::new())).unwrap_or_default();
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n"),
        "{head}"
    );
    // The origin sent no Date, so the cache added the time it received the response.
    assert!(
        head.contains("\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"),
        "{head}"
    );
    assert!(head.contains("Content-Length: 11\r\nAge: 5\r\nX-Cache: HIT\r\n\r\n"));
    assert_eq!(cache.stats().hits.load(Relaxed), 1);
    assert_eq!(cache.stats().misses.load(Relaxed), 1);
    assert_eq!(cache.stats().entries.load(Relaxed), 1);
}

/// Request fields, status, response fields.
type Case<'a> = (&'a Headers, u16, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn not_storable_responses_are_not_stored() {
    let auth = headers(&[("authorization", "Basic eDp5")]);
    let no_store_request = headers(&[("cache-control", "no-store")]);
    let none = Headers::new();
    let cases: [Case; 7] = [
        (&none, 200, &[("cache-control", "no-store, max-age=60")]),
        (&no_store_request, 200, &[("cache-control", "max-age=60")]),
        (&none, 200, &[("cache-control", "private, max-age=60")]),
        (&auth, 200, &[("cache-control", "max-age=60")]),
        (
            &none,
            200,
            &[("cache-control", "max-age=60"), ("vary", "*")],
        ),
        (&none, 500, &[]),
        (&none, 200, &[("cache-control", "max-age=0")]),
    ];
    for (i, (request_headers, status, response)) in cases.into_iter().enumerate() {
        let cache = cache();
        let get = request("GET", "/x", request_headers);
        assert!(
            !fetch(&cache, &get, status, response, b"body").await,
            "case {i}"
        );
        assert!(
            matches!(cache.lookup(&get, t0()).await, Lookup::Miss(_)),
            "case {i}"
        );
        assert_eq!(cache.stats().entries.load(Relaxed), 0, "case {i}");
    }
}

#[tokio::test]
async fn vary_keeps_two_variants() {
    let cache = cache();
    let en = headers(&[("Accept-Language", "en")]);
    let fr = headers(&[("accept-language", " fr ")]);
    let de = headers(&[("Accept-Language", "de")]);
    let vary = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
    assert!(fetch(&cache, &request("GET", "/v", &en), 200, &vary, b"hello").await);
    assert!(fetch(&cache, &request("GET", "/v", &fr), 200, &vary, b"bonjour").await);
    let en_again = headers(&[("accept-language", "en")]);
    let got = |h| body_of_now(&cache, request("GET", "/v", h));
    assert_eq!(got(&en_again).await.as_deref(), Some(&b"hello"[..]));
    assert_eq!(got(&fr).await.as_deref(), Some(&b"bonjour"[..]));
    assert_eq!(got(&de).await, None);
}

async fn body_of_now(cache: &Cache, req: CacheRequest<'_>) -> Option<Bytes> {
    body_of(cache.lookup(&req, at(1)).await)
}

#[tokio::test]
async fn expiry_then_revalidation_with_304() {
    let cache = cache();
    let none = Headers::new();
    let get = request("GET", "/r", &none);
    let response = [
        ("cache-control", "max-age=10"),
        ("etag", "\"v1\""),
        ("x-origin", "1"),
    ];
    assert!(fetch(&cache, &get, 200, &response, b"payload").await);
    assert!(matches!(cache.lookup(&get, at(9)).await, Lookup::Fresh(_)));
    let Lookup::Stale(revalidation) = cache.lookup(&get, at(10)).await else {
        panic!("expected stale at the end of the lifetime");
    };
    let mut upstream = headers(&[("If-None-Match", "\"client\""), ("accept", "*/*")]);
    revalidation.apply_validators(&mut upstream);
    assert_eq!(upstream.get_str("if-none-match"), Some("\"v1\""));
    assert_eq!(upstream.get_all("if-none-match").count(), 1);

    let not_modified = headers(&[
        ("etag", "\"v1\""),
        ("cache-control", "max-age=100"),
        ("x-origin", "2"),
    ]);
    let hit = cache.refresh(&get, revalidation, &not_modified, timing(12));
    let Some(hit) = hit else {
        panic!("matching 304 must refresh");
    };
    assert_eq!((hit.status(), &hit.body()[..]), (200, &b"payload"[..]));
    assert_eq!(hit.headers().get_str("x-origin"), Some("2"));
    // Fresh again, for the 304's lifetime counted from when it arrived.
    assert!(matches!(
        cache.lookup(&get, at(111)).await,
        Lookup::Fresh(_)
    ));
    assert!(matches!(
        cache.lookup(&get, at(112)).await,
        Lookup::Stale(_)
    ));
    assert_eq!(cache.stats().revalidations.load(Relaxed), 1);
}

#[tokio::test]
async fn mismatched_304_does_not_refresh() {
    let cache = cache();
    let none = Headers::new();
    let get = request("GET", "/m", &none);
    assert!(
        fetch(
            &cache,
            &get,
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
            b"x"
        )
        .await
    );
    let Lookup::Stale(revalidation) = cache.lookup(&get, at(5)).await else {
        panic!("expected stale");
    };
    assert!(
        cache
            .refresh(
                &get,
                revalidation,
                &headers(&[("etag", "\"v2\"")]),
                timing(5)
            )
            .is_none()
    );
}

#[tokio::test]
async fn request_directives_force_revalidation() {
    let cache = cache();
    let none = Headers::new();
    assert!(
        fetch(
            &cache,
            &request("GET", "/d", &none),
            200,
            &[("cache-control", "max-age=60")],
            b"x"
        )
        .await
    );
    for cc in ["no-cache", "max-age=0"] {
        let h = headers(&[("cache-control", cc)]);
        assert!(
            matches!(
                cache.lookup(&request("GET", "/d", &h), t0()).await,
                Lookup::Stale(_)
            ),
            "{cc}"
        );
    }
    let only = headers(&[("cache-control", "only-if-cached")]);
    let lookup = cache.lookup(&request("GET", "/other", &only), t0()).await;
    assert!(matches!(lookup, Lookup::GatewayTimeout));
}

#[tokio::test]
async fn head_is_answered_from_get() {
    let cache = cache();
    let none = Headers::new();
    assert!(
        fetch(
            &cache,
            &request("GET", "/h", &none),
            200,
            &[("cache-control", "max-age=60")],
            b"12345"
        )
        .await
    );
    let Lookup::Fresh(hit) = cache.lookup(&request("HEAD", "/h", &none), t0()).await else {
        panic!("HEAD must hit the stored GET");
    };
    assert!(hit.body().is_empty());
    let head = String::from_utf8(hit.render_head(&none)).unwrap_or_default();
    assert!(head.contains("Content-Length: 5\r\n"));
    // A HEAD miss is not stored and does not lead a flight.
    let Lookup::Miss(miss) = cache.lookup(&request("HEAD", "/nope", &none), t0()).await else {
        panic!("expected a miss");
    };
    assert!(miss.flight.is_none());
}

#[tokio::test]
async fn unsafe_methods_invalidate() {
    let cache = cache();
    let none = Headers::new();
    let fresh = [("cache-control", "max-age=60")];
    for path in ["/p", "/loc", "/cl"] {
        assert!(fetch(&cache, &request("GET", path, &none), 200, &fresh, b"x").await);
    }
    let post = request("POST", "/p", &none);
    assert!(matches!(
        cache.lookup(&post, t0()).await,
        Lookup::Uncacheable
    ));
    cache.invalidate(&post, 500, &none);
    assert!(
        body_of_now(&cache, request("GET", "/p", &none))
            .await
            .is_some(),
        "errors do not invalidate"
    );
    let moved = headers(&[
        ("location", "/loc"),
        ("content-location", "http://other.test/cl"),
    ]);
    cache.invalidate(&post, 201, &moved);
    assert!(
        body_of_now(&cache, request("GET", "/p", &none))
            .await
            .is_none()
    );
    assert!(
        body_of_now(&cache, request("GET", "/loc", &none))
            .await
            .is_none()
    );
    assert!(
        body_of_now(&cache, request("GET", "/cl", &none))
            .await
            .is_some(),
        "other origin untouched"
    );
    for method in ["PUT", "DELETE", "PATCH"] {
        assert!(fetch(&cache, &request("GET", "/p", &none), 200, &fresh, b"x").await);
        cache.invalidate(&request(method, "/p", &none), 204, &none);
        assert!(
            body_of_now(&cache, request("GET", "/p", &none))
                .await
                .is_none(),
            "{method}"
        );
    }
}

#[tokio::test]
async fn broken_off_or_oversized_bodies_are_not_stored() {
    let cache = cache();
    let none = Headers::new();
    let get = request("GET", "/b", &none);
    let response = headers(&[("cache-control", "max-age=60"), ("content-length", "10")]);
    let head = CacheResponse {
        status: 200,
        reason: b"OK",
        headers: &response,
    };

    // Dropped before finish: nothing stored, and the flight is released at once.
    let Lookup::Miss(miss) = cache.lookup(&get, t0()).await else {
        panic!("miss")
    };
    let mut filler = cache.begin_fill(&get, miss, &head, timing(0));
    filler.iter_mut().for_each(|f| f.push(b"12345"));
    drop(filler);
    // Finished with fewer bytes than Content-Length: not stored either.
    let Lookup::Miss(miss) = cache.lookup(&get, t0()).await else {
        panic!("miss")
    };
    let filler = cache.begin_fill(&get, miss, &head, timing(0));
    assert_eq!(filler.map(Filler::finish), Some(false));

    // Streamed past the object limit without a Content-Length.
    let big = vec![b'x'; MAX_OBJECT + 1];
    assert!(!fetch(&cache, &get, 200, &[("cache-control", "max-age=60")], &big).await);
    // Declared over the limit: not even started.
    let Lookup::Miss(miss) = cache.lookup(&get, t0()).await else {
        panic!("miss")
    };
    let too_long = headers(&[
        ("cache-control", "max-age=60"),
        ("content-length", "1000000"),
    ]);
    let head = CacheResponse {
        status: 200,
        reason: b"OK",
        headers: &too_long,
    };
    assert!(cache.begin_fill(&get, miss, &head, timing(0)).is_none());
    assert_eq!(cache.stats().entries.load(Relaxed), 0);
}

#[tokio::test]
async fn eviction_at_the_byte_limit() {
    // Room for two 4 KiB bodies, not three.
    let cache = Cache::new(10 << 10, 8 << 10, Duration::from_secs(2));
    let none = Headers::new();
    let fresh = [("cache-control", "max-age=60")];
    let body = vec![b'x'; 4 << 10];
    for path in ["/1", "/2", "/3"] {
        assert!(fetch(&cache, &request("GET", path, &none), 200, &fresh, &body).await);
    }
    assert!(
        body_of_now(&cache, request("GET", "/1", &none))
            .await
            .is_none()
    );
    assert!(
        body_of_now(&cache, request("GET", "/2", &none))
            .await
            .is_some()
    );
    assert!(
        body_of_now(&cache, request("GET", "/3", &none))
            .await
            .is_some()
    );
    assert_eq!(cache.stats().evictions.load(Relaxed), 1);
}

/// 50 concurrent misses: exactly one goes to the "origin", the rest are served its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_make_one_fetch() {
    let cache = cache();
    let origin_requests = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let origin_requests = Arc::clone(&origin_requests);
        tasks.push(tokio::spawn(async move {
            let none = Headers::new();
            let get = request("GET", "/popular", &none);
            match cache.lookup(&get, t0()).await {
                Lookup::Fresh(hit) => hit.body(),
                Lookup::Miss(miss) => {
                    origin_requests.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let response = headers(&[("cache-control", "max-age=60")]);
                    let head = CacheResponse {
                        status: 200,
                        reason: b"OK",
                        headers: &response,
                    };
                    let mut filler = cache.begin_fill(&get, miss, &head, timing(0));
                    filler.iter_mut().for_each(|f| f.push(b"shared"));
                    filler.map(Filler::finish);
                    Bytes::from_static(b"shared")
                }
                _ => Bytes::new(),
            }
        }));
    }
    for task in tasks {
        let body = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(body, Ok(Ok(ref b)) if &b[..] == b"shared"));
    }
    assert_eq!(origin_requests.load(Relaxed), 1);
    assert_eq!(cache.stats().hits.load(Relaxed), 49);
}

/// When the leader's fetch fails, the waiters are released at once and fetch themselves.
#[tokio::test]
async fn failed_leader_releases_waiters() {
    let cache = cache();
    let none = Headers::new();
    let get = request("GET", "/fails", &none);
    let Lookup::Miss(leader) = cache.lookup(&get, t0()).await else {
        panic!("miss")
    };
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let cache = cache.clone();
        waiters.push(tokio::spawn(async move {
            let none = Headers::new();
            matches!(
                cache.lookup(&request("GET", "/fails", &none), t0()).await,
                Lookup::Miss(_)
            )
        }));
    }
    tokio::task::yield_now().await;
    drop(leader);
    for waiter in waiters {
        // Well under the 2 s flight wait: they were woken, not timed out.
        let missed = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(matches!(missed, Ok(Ok(true))));
    }
    assert!(cache.flights.is_empty());
}
