//! The cache end to end, validation: expiry and revalidation with `If-None-Match` /
//! `If-Modified-Since` and `304`, request `no-cache` / `max-age=0`, the client's own
//! validators, HEAD from a stored GET, and invalidation by unsafe methods.

use std::time::Duration;

use crate::common::cache::*;
use crate::common::*;

/// An origin whose representation has the validators `"v1"` and a fixed
/// Last-Modified: it answers matching conditionals with 304 and all else with `full`.
async fn validating_origin(fields: &'static str) -> Origin {
    const LAST_MODIFIED: &str = "Tue, 01 Jan 2019 00:00:00 GMT";
    Origin::start(move |seen| {
        let etag_matches = seen.header("if-none-match").as_deref() == Some("\"v1\"");
        let date_matches = seen.header("if-modified-since").as_deref() == Some(LAST_MODIFIED);
        if etag_matches || date_matches {
            format!("HTTP/1.1 304 Not Modified\r\n{fields}\r\n").into_bytes()
        } else {
            reply(fields, "version one")
        }
    })
    .await
}

#[tokio::test]
async fn expired_response_is_revalidated_with_if_none_match() {
    let origin = validating_origin("Cache-Control: max-age=1\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/expiring");
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "MISS");
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 1);
    // Past max-age=1 (Age is counted in whole seconds, so 2 s is surely past it).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = get(proxy.addr, &url, &[]).await;
    assert_eq!(origin.request_count(), 2);
    let seen = &origin.requests()[1];
    assert_eq!(seen.header("if-none-match"), Some("\"v1\"".into()));
    assert_eq!(revalidated.status, 200, "{}", revalidated.head);
    assert_eq!(revalidated.body, b"version one");
    // The 304 made it fresh again.
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"version one".to_vec())
    );
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn revalidation_answered_with_a_new_representation_replaces_the_entry() {
    let origin = Origin::start(|seen| match seen.header("if-none-match") {
        // The stored "v1" is out of date: the origin sends "v2" in full.
        Some(_) => reply(
            "Cache-Control: max-age=600\r\nETag: \"v2\"\r\n",
            "version two",
        ),
        None => reply(
            "Cache-Control: max-age=0\r\nETag: \"v1\"\r\n",
            "version one",
        ),
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/changing");
    assert_eq!(get(proxy.addr, &url, &[]).await.body, b"version one");
    let changed = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (changed.status, changed.body),
        (200, b"version two".to_vec())
    );
    assert_eq!(
        origin.requests()[1].header("if-none-match"),
        Some("\"v1\"".into())
    );
    let hit = get(proxy.addr, &url, &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"version two".to_vec())
    );
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test]
async fn response_stale_on_arrival_is_revalidated_with_if_modified_since() {
    let origin = validating_origin(
        "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\nLast-Modified: Tue, 01 Jan 2019 00:00:00 GMT\r\n",
    )
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/old");
    for _ in 0..3 {
        let reply = get(proxy.addr, &url, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.head);
        assert_eq!(reply.body, b"version one");
    }
    let seen = origin.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("if-modified-since"), None);
    for later in &seen[1..] {
        assert_eq!(
            later.header("if-modified-since"),
            Some("Tue, 01 Jan 2019 00:00:00 GMT".into()),
            "{}",
            later.head_str()
        );
    }
}

#[tokio::test]
async fn request_no_cache_and_max_age_zero_revalidate() {
    let origin = validating_origin("Cache-Control: max-age=600\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/fresh");
    get(proxy.addr, &url, &[]).await;
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 1);
    let asks = [
        "Cache-Control: no-cache",
        "Cache-Control: max-age=0",
        "Pragma: no-cache",
    ];
    for (n, field) in asks.iter().enumerate() {
        let reply = get(proxy.addr, &url, &[field]).await;
        assert_eq!(reply.status, 200, "{field}");
        assert_eq!(reply.body, b"version one", "{field}");
        assert_eq!(origin.request_count(), n + 2, "{field}");
        let seen = &origin.requests()[n + 1];
        assert_eq!(
            seen.header("if-none-match"),
            Some("\"v1\"".into()),
            "{field}"
        );
    }
    // Without the directive, the (refreshed) entry answers again.
    assert_eq!(get(proxy.addr, &url, &[]).await.x_cache(), "HIT");
    assert_eq!(origin.request_count(), 4);
}

#[tokio::test]
async fn clients_own_validator_gets_304_from_the_cache() {
    let origin = validating_origin("Cache-Control: max-age=600\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/etagged");
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &["If-None-Match: \"v1\""]).await;
    assert_eq!(reply.status, 304, "{}", reply.head);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some("\"v1\"".into()));
    let other = get(proxy.addr, &url, &["If-None-Match: \"v0\""]).await;
    assert_eq!((other.status, other.body), (200, b"version one".to_vec()));
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "twelve bytes").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/doc");
    get(proxy.addr, &url, &[]).await;
    let head = send(proxy.addr, "HEAD", &url, &[], "").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.header("content-length"), Some("12".into()));
    assert!(head.body.is_empty(), "{:?}", head.body);
    let lines: Vec<String> = origin.requests().iter().map(|s| s.request_line()).collect();
    assert_eq!(lines, ["GET /doc HTTP/1.1"]);
}

#[tokio::test]
async fn unsafe_methods_drop_the_stored_entry() {
    let origin = Origin::start(|seen| {
        let method = seen
            .request_line()
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        reply(
            "Cache-Control: max-age=600\r\n",
            &format!("{method} answered"),
        )
    })
    .await;
    let proxy = cached_proxy().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let path = format!("/{method}");
        let url = origin.url(&path);
        get(proxy.addr, &url, &[]).await;
        assert_eq!(
            get(proxy.addr, &url, &[]).await.x_cache(),
            "HIT",
            "{method}"
        );
        assert_eq!(origin.count_for(&path), 1, "{method}");
        let unsafe_reply = send(proxy.addr, method, &url, &[], "change").await;
        assert_eq!(unsafe_reply.body, format!("{method} answered").as_bytes());
        let after = get(proxy.addr, &url, &[]).await;
        assert_eq!(after.x_cache(), "MISS", "{method} left the entry");
        assert_eq!(after.body, b"GET answered");
        assert_eq!(origin.count_for(&path), 3, "{method}");
    }
}

#[tokio::test]
async fn mismatched_304_is_not_used_and_the_client_still_gets_the_page() {
    let origin = Origin::start(|seen| match seen.header("if-none-match") {
        // Claims "not modified" but names another representation (RFC 9111 §4.3.4):
        // it must not update the stored "v1".
        Some(_) => b"HTTP/1.1 304 Not Modified\r\nETag: \"other\"\r\n\r\n".to_vec(),
        None => reply("Cache-Control: max-age=0\r\nETag: \"v1\"\r\n", "full page"),
    })
    .await;
    let proxy = cached_proxy().await;
    let url = origin.url("/odd");
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, b"full page");
    let seen = origin.requests();
    assert_eq!(seen.len(), 3, "no unconditional retry");
    assert_eq!(seen[2].header("if-none-match"), None);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn head_on_a_stale_entry_is_revalidated_without_a_body() {
    let origin = validating_origin("Cache-Control: max-age=0\r\nETag: \"v1\"\r\n").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/stale-head");
    get(proxy.addr, &url, &[]).await;
    let head = send(proxy.addr, "HEAD", &url, &[], "").await;
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("content-length"), Some("11".into()));
    assert!(head.body.is_empty());
    let seen = origin.requests();
    assert_eq!(seen[1].request_line(), "HEAD /stale-head HTTP/1.1");
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\"".into()));
}

#[tokio::test]
async fn unsafe_method_drops_the_uri_in_location() {
    let origin = Origin::start(|seen| {
        if seen.request_line().starts_with("POST") {
            b"HTTP/1.1 201 Created\r\nLocation: /items/7\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            reply("Cache-Control: max-age=600\r\n", "item seven")
        }
    })
    .await;
    let proxy = cached_proxy().await;
    let item = origin.url("/items/7");
    get(proxy.addr, &item, &[]).await;
    assert_eq!(get(proxy.addr, &item, &[]).await.x_cache(), "HIT");
    let created = send(proxy.addr, "POST", &origin.url("/items"), &[], "n=7").await;
    assert_eq!(created.status, 201);
    assert_eq!(get(proxy.addr, &item, &[]).await.x_cache(), "MISS");
    assert_eq!(origin.count_for("/items/7"), 2);
}
