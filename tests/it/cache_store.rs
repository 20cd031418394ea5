//! The cache end to end, storing: hit after miss with one origin request, `Age`, what a
//! shared cache must not store (each case reaching the origin every time), Vary variants.

use crate::common::cache::*;
use crate::common::*;

#[tokio::test]
async fn hit_after_miss_with_one_origin_request() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "cached body").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/page");
    let mut replies = Vec::new();
    for _ in 0..2 {
        let (code, out, err) = curl(&["-i", "-x", &proxy.url(), &url]).await;
        assert_eq!(code, 0, "{err}");
        replies.push(Reply::parse(&out));
    }
    assert_eq!(origin.request_count(), 1);
    let (miss, hit) = (&replies[0], &replies[1]);
    assert_eq!((miss.status, hit.status), (200, 200));
    assert_eq!(miss.x_cache(), "MISS", "{}", miss.head);
    assert_eq!(hit.x_cache(), "HIT", "{}", hit.head);
    assert!(hit.age().is_some(), "no Age on a hit:\n{}", hit.head);
    assert_eq!(hit.body, b"cached body");
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("cache-control"), Some("max-age=600".into()));
}

#[tokio::test]
async fn no_x_cache_without_the_cache() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "plain").await;
    let proxy = Proxy::start().await;
    for _ in 0..2 {
        let reply = get(proxy.addr, &origin.url("/"), &[]).await;
        assert_eq!(reply.body, b"plain");
        assert_eq!(reply.header("x-cache"), None, "{}", reply.head);
    }
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn age_counts_the_origins_age() {
    let origin = origin_with("Cache-Control: max-age=600\r\nAge: 100\r\n", "aged").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/aged");
    get(proxy.addr, &url, &[]).await;
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert!(hit.age().is_some_and(|age| age >= 100), "{}", hit.head);
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn chunked_response_is_stored_and_served_with_a_length() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            .to_vec()
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/chunks");
    let miss = Reply::parse(
        &exchange(
            proxy.addr,
            format!("GET {url} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await,
    );
    assert_eq!(miss.header("transfer-encoding"), Some("chunked".into()));
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(hit.x_cache(), "HIT", "{}", hit.head);
    assert_eq!(hit.header("transfer-encoding"), None, "{}", hit.head);
    assert_eq!(hit.header("content-length"), Some("11".into()));
    assert_eq!(hit.body, b"hello world");
    assert_eq!(origin.request_count(), 1);
}

/// Each case: the response fields, the request fields, and a label for failures.
const NOT_STORABLE: &[(&str, &str, &[&str])] = &[
    (
        "request no-store",
        "Cache-Control: max-age=600\r\n",
        &["Cache-Control: no-store"],
    ),
    (
        "response no-store",
        "Cache-Control: max-age=600, no-store\r\n",
        &[],
    ),
    ("private", "Cache-Control: private, max-age=600\r\n", &[]),
    (
        "authorization",
        "Cache-Control: max-age=600\r\n",
        &["Authorization: Basic dTpw"],
    ),
    (
        "vary star",
        "Cache-Control: max-age=600\r\nVary: *\r\n",
        &[],
    ),
];

#[tokio::test]
async fn not_storable_responses_always_reach_the_origin() {
    let proxy = cached_proxy().await;
    for (label, fields, request) in NOT_STORABLE {
        let origin = origin_with(fields, "not for sharing").await;
        let url = origin.url("/x");
        for _ in 0..3 {
            let reply = get(proxy.addr, &url, request).await;
            assert_eq!(reply.status, 200, "{label}");
            assert_eq!(reply.body, b"not for sharing", "{label}");
            assert_eq!(reply.x_cache(), "MISS", "{label}:\n{}", reply.head);
        }
        assert_eq!(origin.request_count(), 3, "{label}");
    }
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn non_get_responses_are_not_stored() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "answer").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/form");
    for _ in 0..2 {
        let reply = send(proxy.addr, "POST", &url, &[], "a=1").await;
        assert_eq!(reply.body, b"answer");
    }
    for _ in 0..2 {
        let reply = send(proxy.addr, "HEAD", &url, &[], "").await;
        assert_eq!(reply.status, 200);
    }
    let lines: Vec<String> = origin.requests().iter().map(|s| s.request_line()).collect();
    assert_eq!(
        lines,
        [
            "POST /form HTTP/1.1",
            "POST /form HTTP/1.1",
            "HEAD /form HTTP/1.1",
            "HEAD /form HTTP/1.1"
        ]
    );
    // Only a GET fills the cache: the next GET still goes to the origin.
    get(proxy.addr, &url, &[]).await;
    assert_eq!(origin.request_count(), 5);
}

#[tokio::test]
async fn authorization_is_shared_when_the_response_allows_it() {
    for fields in [
        "Cache-Control: public, max-age=600\r\n",
        "Cache-Control: s-maxage=600\r\n",
        "Cache-Control: max-age=600, must-revalidate\r\n",
    ] {
        let origin = origin_with(fields, "shared").await;
        let proxy = cached_proxy().await;
        let url = origin.url("/shared");
        let miss = get(proxy.addr, &url, &["Authorization: Basic dTpw"]).await;
        let hit = get(proxy.addr, &url, &["Authorization: Basic dTpw"]).await;
        assert_eq!(miss.x_cache(), "MISS", "{fields}");
        assert_eq!(hit.x_cache(), "HIT", "{fields}");
        assert_eq!(hit.body, b"shared");
        assert_eq!(origin.request_count(), 1, "{fields}");
    }
}

#[tokio::test]
async fn vary_keeps_one_variant_per_language() {
    let origin = Origin::start(|seen| {
        let language = seen.header("accept-language").unwrap_or_default();
        reply(
            "Cache-Control: max-age=600\r\nVary: Accept-Language\r\n",
            &format!("page in {language}"),
        )
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/page");
    for round in 0..3 {
        for language in ["en", "fr"] {
            let field = format!("Accept-Language: {language}");
            let reply = get(proxy.addr, &url, &[&field]).await;
            assert_eq!(reply.body, format!("page in {language}").as_bytes());
            let expected = if round == 0 { "MISS" } else { "HIT" };
            assert_eq!(reply.x_cache(), expected, "round {round} {language}");
        }
    }
    assert_eq!(origin.request_count(), 2);
    // A third language is a variant of its own.
    let reply = get(proxy.addr, &url, &["Accept-Language: de"]).await;
    assert_eq!(reply.body, b"page in de");
    assert_eq!(origin.request_count(), 3);
}
