//! Failures of the client's request become clear HTTP answers: 400 for origin-form and
//! ambiguous framing (with nothing reaching the origin), 414/431 for oversize heads, 501
//! for https:// without CONNECT, 502 for unreachable or unresolvable origins, 504 for one
//! that never accepts, 508 for loops, and a body broken off by a closing origin is never
//! passed off as complete. Faults of a connected origin are in `faults`. Each ends with a
//! health check.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test]
async fn origin_form_is_explained() {
    let proxy = Proxy::start().await;
    let response = String::from_utf8(
        exchange(proxy.addr, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n").await,
    )
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.contains("Connection: close\r\n"));
    assert!(response.ends_with("This is a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port.\n"));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn ambiguous_framing_is_rejected_and_never_forwarded() {
    let origin = Origin::fixed("reached").await;
    let proxy = Proxy::start().await;
    let url = origin.url("/");
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: -5\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
    ] {
        let request =
            format!("POST {url} HTTP/1.1\r\nHost: o\r\n{framing}\r\n5\r\nhello\r\n0\r\n\r\n");
        let response = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&response), 400, "{framing}");
    }
    for chunks in [
        "fffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "z\r\n\r\n",
    ] {
        let request =
            format!("POST {url} HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}");
        let response = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&response), 400, "{chunks:?}");
    }
    // The head of a request with a broken chunked body may have reached the origin, but no
    // complete request did: the origin's reader never finished one.
    assert_eq!(origin.request_count(), 0);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn oversize_heads() {
    let proxy = Proxy::start().await;
    let long_uri = format!(
        "GET http://o/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(
        status(&exchange(proxy.addr, long_uri.as_bytes()).await),
        414
    );
    let big_header = format!(
        "GET http://o/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(
        status(&exchange(proxy.addr, big_header.as_bytes()).await),
        431
    );
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET http://o/ HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(status(&exchange(proxy.addr, many.as_bytes()).await), 431);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn https_scheme_needs_connect() {
    let proxy = Proxy::start().await;
    let response = exchange(
        proxy.addr,
        b"GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), 501);
    proxy.assert_healthy().await;
}

/// A refused port and a name that does not resolve: 502 for forwarding and for CONNECT,
/// promptly, naming the name.
#[tokio::test]
async fn unreachable_and_unresolvable_origins_get_502() {
    let proxy = Proxy::start().await;
    let closed = closed_port().await;
    let (code, body, _) = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        "%{http_code}",
        &format!("http://{closed}/"),
    ])
    .await;
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&body).ends_with("502"));
    let response = exchange(
        proxy.addr,
        format!("CONNECT {closed} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&response), 502);

    for request in [
        "GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT no-such-host.invalid:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let started = Instant::now();
        let response = exchange(proxy.addr, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&response);
        assert_eq!(status(&response), 502, "{text}");
        assert!(text.contains("no-such-host.invalid"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(8));
    }
    let response = exchange(
        proxy.addr,
        b"GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(response).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(text.ends_with("Bad gateway: cannot resolve no-such-host.invalid.\n"));
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn origin_that_does_not_accept_gets_504() {
    // A listener with a backlog of one that never accepts: once its queue is full, the
    // kernel drops further SYNs, so a connect attempt hangs until the proxy gives up.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
        {
            fillers.push(stream);
        }
    }
    let proxy = Proxy::start_with(|c| c.timeouts.connect = Duration::from_secs(1)).await;
    let response = exchange(
        proxy.addr,
        format!("GET http://{addr}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        status(&response),
        504,
        "{}",
        String::from_utf8_lossy(&response)
    );
    drop(listener);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn loops_get_508() {
    let origin = Origin::fixed("never").await;
    let proxy = Proxy::start().await;
    let via = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nVia: 1.1 other, 1.1 proxy-server\r\n\r\n",
        origin.url("/")
    );
    assert_eq!(status(&exchange(proxy.addr, via.as_bytes()).await), 508);
    let to_self = format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", proxy.addr);
    assert_eq!(status(&exchange(proxy.addr, to_self.as_bytes()).await), 508);
    let to_self = format!(
        "GET http://localhost:{}/ HTTP/1.1\r\nHost: x\r\n\r\n",
        proxy.addr.port()
    );
    assert_eq!(status(&exchange(proxy.addr, to_self.as_bytes()).await), 508);
    assert_eq!(origin.request_count(), 0);
    proxy.assert_healthy().await;
}

#[tokio::test]
async fn body_broken_off_is_never_passed_off_as_complete() {
    let addr = scripted_origin(|mut stream| async move {
        if next_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
                .await;
        }
    })
    .await;
    let proxy = Proxy::start().await;
    let (code, body, _) = curl(&["-x", &proxy.url(), &format!("http://{addr}/")]).await;
    assert_eq!(code, 18, "curl must see a partial transfer");
    assert_eq!(body, b"only ten b");
    // On a kept-alive connection, the proxy closes instead of serving the next request.
    let all = exchange(
        proxy.addr,
        format!("GET http://{addr}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(all.ends_with(b"only ten b"));
    proxy.assert_healthy().await;
}
