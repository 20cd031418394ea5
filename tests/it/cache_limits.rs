//! The cache end to end, limits and concurrency: eviction at the byte limit in LRU
//! order, objects over the size limit, bodies broken off, concurrent misses collapsed
//! into one origin request, `only-if-cached`, keep-alive and pipelining on hits.

use std::sync::atomic::Ordering::SeqCst;

use crate::common::cache::*;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn eviction_drops_the_least_recently_used_at_the_byte_limit() {
    const OBJECT: usize = 400 * 1024;
    let origin = Origin::start(|seen| {
        let path = seen.target();
        let fill = path.bytes().last().unwrap_or(b'?') as char;
        reply(
            "Cache-Control: max-age=600\r\n",
            &fill.to_string().repeat(OBJECT),
        )
    })
    .await;
    let proxy = cached_proxy_of(1).await;
    let addr = proxy.addr;
    let fetch = |path: &'static str| {
        let url = origin.url(path);
        async move {
            let reply = get(addr, &url, &[]).await;
            assert_eq!(reply.body.len(), OBJECT, "{path}");
            assert!(reply.body.ends_with(&path.as_bytes()[path.len() - 1..]));
            reply.x_cache()
        }
    };
    assert_eq!(fetch("/a").await, "MISS");
    assert_eq!(fetch("/b").await, "MISS");
    // /a becomes the most recently used, so storing /c must evict /b.
    assert_eq!(fetch("/a").await, "HIT");
    assert_eq!(fetch("/c").await, "MISS");
    assert_eq!(fetch("/a").await, "HIT");
    assert_eq!(fetch("/c").await, "HIT");
    assert_eq!(fetch("/b").await, "MISS");
    assert_eq!(
        [
            origin.count_for("/a"),
            origin.count_for("/b"),
            origin.count_for("/c")
        ],
        [1, 2, 1]
    );
    let snapshot = proxy.snapshot();
    assert_eq!(snapshot.cache_evictions, 2, "{snapshot:?}");
    assert_eq!(snapshot.cache_entries, 2, "{snapshot:?}");
    assert!(snapshot.cache_bytes_held <= 1 << 20, "{snapshot:?}");
    assert!(
        snapshot.cache_bytes_held >= 2 * OBJECT as u64,
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn object_over_the_limit_streams_whole_but_is_not_stored() {
    const SIZE: usize = 200 * 1024;
    let body: String = (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let chunked_body = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.request_line().contains("/chunked") {
            // No Content-Length: the limit is found while the body streams.
            let mut out = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                            Transfer-Encoding: chunked\r\n\r\n"
                .to_vec();
            for piece in chunked_body.as_bytes().chunks(16 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        } else {
            reply("Cache-Control: max-age=600\r\n", &chunked_body)
        }
    })
    .await;
    let proxy = Proxy::start_with(|c| cache_on(c, 64, 64)).await;
    for path in ["/sized", "/chunked"] {
        let url = origin.url(path);
        for _ in 0..2 {
            let (code, out, err) = curl(&["-x", &proxy.url(), &url]).await;
            assert_eq!(code, 0, "{err}");
            assert!(out == body.as_bytes(), "{path}: body changed in transit");
        }
        assert_eq!(origin.count_for(path), 2, "{path} was stored");
    }
    // A small object on the same proxy is still stored.
    let small = origin_with("Cache-Control: max-age=600\r\n", "small").await;
    get(proxy.addr, &small.url("/"), &[]).await;
    assert_eq!(get(proxy.addr, &small.url("/"), &[]).await.x_cache(), "HIT");
}

#[tokio::test]
async fn response_broken_off_mid_body_is_not_stored() {
    // The first answer for each path breaks off; later ones are whole.
    let broken_once = std::sync::Mutex::new(std::collections::HashSet::new());
    let origin = Origin::start(move |seen| {
        let first = broken_once.lock().unwrap().insert(seen.request_line());
        match (first, seen.request_line().contains("/chunked")) {
            // Promises 100 bytes, sends 40, closes.
            (true, false) => format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 100\r\n\
                 Connection: close\r\n\r\n{}",
                "x".repeat(40)
            )
            .into_bytes(),
            // One chunk, then the connection closes without the last chunk.
            (true, true) => b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                              5\r\nhello\r\n"
                .to_vec(),
            (false, _) => reply("Cache-Control: max-age=600\r\n", "complete"),
        }
    })
    .await;
    let proxy = cached_proxy().await;
    for path in ["/sized", "/chunked"] {
        let url = origin.url(path);
        let broken = get(proxy.addr, &url, &[]).await;
        assert_ne!(broken.body, b"complete", "{path}");
        let next = get(proxy.addr, &url, &[]).await;
        assert_eq!(
            (next.x_cache(), next.body),
            ("MISS".into(), b"complete".to_vec())
        );
        assert_eq!(
            origin.count_for(path),
            2,
            "{path}: the broken body was stored"
        );
        let hit = get(proxy.addr, &url, &[]).await;
        assert_eq!(
            (hit.x_cache(), hit.body),
            ("HIT".into(), b"complete".to_vec())
        );
    }
    proxy.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let (origin, count) = slow_origin(
        SLOW_ORIGIN_DELAY,
        reply("Cache-Control: max-age=600\r\n", "popular"),
    )
    .await;
    let proxy = cached_proxy().await;
    let url = format!("http://{origin}/popular");
    let clients: Vec<_> = (0..CONCURRENT_MISSES)
        .map(|_| {
            let url = url.clone();
            let addr = proxy.addr;
            tokio::spawn(async move { get(addr, &url, &[]).await })
        })
        .collect();
    let mut marks = Vec::new();
    for client in clients {
        let reply = within(client).await.unwrap();
        assert_eq!((reply.status, &reply.body[..]), (200, &b"popular"[..]));
        marks.push(reply.x_cache());
    }
    assert_eq!(
        count.load(SeqCst),
        1,
        "the origin saw more than one request"
    );
    let misses = marks.iter().filter(|m| *m == "MISS").count();
    let hits = marks.iter().filter(|m| *m == "HIT").count();
    assert_eq!((misses, hits), (1, CONCURRENT_MISSES - 1), "{marks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_misses_fetch_themselves_when_the_first_is_not_storable() {
    const CLIENTS: usize = 10;
    let (origin, count) = slow_origin(
        SLOW_ORIGIN_DELAY,
        reply("Cache-Control: no-store\r\n", "personal"),
    )
    .await;
    let proxy = cached_proxy().await;
    let url = format!("http://{origin}/personal");
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            let addr = proxy.addr;
            tokio::spawn(async move { get(addr, &url, &[]).await })
        })
        .collect();
    for client in clients {
        let reply = within(client).await.unwrap();
        assert_eq!((reply.status, reply.x_cache()), (200, "MISS".into()));
    }
    assert_eq!(count.load(SeqCst), CLIENTS);
    // Released as soon as the first answer proved unstorable, not after the full wait.
    assert!(
        started.elapsed() < proxy_server::cache::DEFAULT_FLIGHT_WAIT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn only_if_cached_with_nothing_stored_is_504() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "stored later").await;
    let proxy = cached_proxy().await;
    let url = origin.url("/maybe");
    let reply = get(proxy.addr, &url, &["Cache-Control: only-if-cached"]).await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert_eq!(origin.request_count(), 0);
    get(proxy.addr, &url, &[]).await;
    let reply = get(proxy.addr, &url, &["Cache-Control: only-if-cached"]).await;
    assert_eq!((reply.status, reply.x_cache()), (200, "HIT".into()));
    assert_eq!(origin.request_count(), 1);
    // Stored but stale is not good enough either (RFC 9111 §5.2.1.7).
    let stale = origin_with("Cache-Control: max-age=0\r\nETag: \"s\"\r\n", "stale").await;
    get(proxy.addr, &stale.url("/"), &[]).await;
    let reply = get(
        proxy.addr,
        &stale.url("/"),
        &["Cache-Control: only-if-cached"],
    )
    .await;
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert_eq!(stale.request_count(), 1);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn hits_keep_the_client_connection_alive_and_are_counted() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "again and again").await;
    let proxy = cached_proxy().await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: origin\r\n\r\n",
        origin.url("/kept")
    );
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    const HITS: usize = 5;
    for n in 0..=HITS {
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = Reply::parse(&read_response(&mut stream).await);
        assert_eq!(reply.status, 200, "request {n}");
        assert_eq!(reply.body, b"again and again", "request {n}");
        assert_eq!(
            reply.header("connection"),
            None,
            "request {n}:\n{}",
            reply.head
        );
        let expected = if n == 0 { "MISS" } else { "HIT" };
        assert_eq!(reply.x_cache(), expected, "request {n}");
        assert_eq!(reply.age().is_some(), n > 0, "request {n}:\n{}", reply.head);
    }
    assert_eq!(origin.request_count(), 1);
    let snapshot = proxy.snapshot();
    assert_eq!(snapshot.cache_hits, HITS as u64, "{snapshot:?}");
    assert_eq!(snapshot.cache_misses, 1, "{snapshot:?}");
    assert_eq!(snapshot.cache_entries, 1, "{snapshot:?}");
    assert!(snapshot.cache_bytes_held > 15, "{snapshot:?}");
    assert_eq!(snapshot.requests.allowed, HITS as u64 + 1, "{snapshot:?}");
    // Closing is the client's choice: a last hit with `Connection: close` ends it.
    let closing = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    stream.write_all(closing.as_bytes()).await.unwrap();
    let last = Reply::parse(&read_to_close(&mut stream).await);
    assert_eq!(last.header("connection"), Some("close".into()));
    assert_eq!(
        (last.x_cache(), last.body),
        ("HIT".into(), b"again and again".to_vec())
    );
}

#[tokio::test]
async fn key_ignores_host_case() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "same resource").await;
    let proxy = cached_proxy().await;
    let port = origin.addr.port();
    let miss = get(proxy.addr, &format!("http://localhost:{port}/k"), &[]).await;
    assert_eq!(
        (miss.status, miss.x_cache()),
        (200, "MISS".into()),
        "{}",
        miss.head
    );
    let hit = get(proxy.addr, &format!("http://LocalHost:{port}/k"), &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.body),
        ("HIT".into(), b"same resource".to_vec())
    );
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn http10_client_gets_a_hit_and_a_close() {
    let origin = origin_with("Cache-Control: max-age=600\r\n", "old client").await;
    let proxy = cached_proxy().await;
    let request = format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/ten"));
    exchange(proxy.addr, request.as_bytes()).await;
    let hit = Reply::parse(&exchange(proxy.addr, request.as_bytes()).await);
    assert_eq!(
        (hit.status, hit.x_cache()),
        (200, "HIT".into()),
        "{}",
        hit.head
    );
    assert_eq!(hit.body, b"old client");
    assert_eq!(origin.request_count(), 1);
}

#[tokio::test]
async fn pipelined_requests_get_hits_in_order() {
    let origin = Origin::start(|seen| {
        let path = seen.target();
        reply("Cache-Control: max-age=600\r\n", &format!("body of {path}"))
    })
    .await;
    let proxy = cached_proxy().await;
    for path in ["/p1", "/p2"] {
        get(proxy.addr, &origin.url(path), &[]).await;
    }
    let mut batch = String::new();
    for path in ["/p1", "/p2", "/p1"] {
        batch.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: o\r\n\r\n",
            origin.url(path)
        ));
    }
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream.write_all(batch.as_bytes()).await.unwrap();
    for path in ["/p1", "/p2", "/p1"] {
        let reply = Reply::parse(&read_response(&mut stream).await);
        assert_eq!(reply.x_cache(), "HIT", "{path}");
        assert_eq!(reply.body, format!("body of {path}").as_bytes());
    }
    assert_eq!(origin.request_count(), 2);
}
