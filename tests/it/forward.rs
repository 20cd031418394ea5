//! Plain-HTTP forwarding: what the origin receives (request line, Host, hop-by-hop
//! fields, Via, bodies in every framing) and what the client gets back, with curl, an
//! HTTP client crate, and raw sockets.

use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn curl_get_through_the_proxy() {
    let origin = Origin::fixed("hello from origin").await;
    let proxy = Proxy::start().await;
    let (code, body, err) = curl(&["-x", &proxy.url(), &origin.url("/greeting?x=1")]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, b"hello from origin");
    let seen = &origin.requests()[0];
    assert_eq!(seen.request_line(), "GET /greeting?x=1 HTTP/1.1");
    assert_eq!(seen.header("host"), Some(origin.addr.to_string()));
    assert_eq!(seen.header("via"), Some("1.1 proxy-server".into()));
}

#[tokio::test]
async fn http_client_crate_through_the_proxy() {
    let origin = Origin::start(|seen| ok(&format!("got {} bytes", seen.body.len()))).await;
    let proxy = Proxy::start().await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url()).unwrap())
        .build()
        .unwrap();
    let response = within(
        client
            .post(origin.url("/upload"))
            .body(vec![7u8; 10_000])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["via"]
            .to_str()
            .unwrap()
            .ends_with("1.1 proxy-server")
    );
    assert_eq!(within(response.text()).await.unwrap(), "got 10000 bytes");
    assert_eq!(origin.requests()[0].body, vec![7u8; 10_000]);
}

#[tokio::test]
async fn path_and_query_are_forwarded_byte_exact() {
    let origin = Origin::fixed("ok").await;
    let proxy = Proxy::start().await;
    let path = "/a%2Fb/./c/../%7Euser;p=1?q=%20x&y=a+b&z=%zz#";
    let path = &path[..path.len() - 1];
    let request = format!(
        "GET http://{}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.addr, origin.addr
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 200);
    assert_eq!(
        origin.requests()[0].request_line(),
        format!("GET {path} HTTP/1.1")
    );
}

#[tokio::test]
async fn hop_by_hop_fields_are_stripped_and_via_appended() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: X-Origin-Hop\r\n\
          X-Origin-Hop: secret\r\nProxy-Authenticate: Basic\r\nX-Kept: yes\r\n\r\nok"
            .to_vec()
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: wrong.example\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\
         Proxy-Connection: keep-alive\r\nKeep-Alive: 300\r\nTE: trailers\r\nTrailer: X-T\r\n\
         Upgrade: h2c\r\nProxy-Authorization: Basic dTpw\r\nX-Custom-CASE:  kept as is \r\n\
         Via: 1.0 first-hop\r\nAccept: */*\r\n\r\n",
        origin.url("/")
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let seen = &origin.requests()[0];
    let head = seen.head_str();
    for gone in [
        "connection",
        "x-hop",
        "proxy-connection",
        "keep-alive",
        "te:",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !head.to_ascii_lowercase().contains(&format!("\r\n{gone}")),
            "{gone} reached the origin:\n{head}"
        );
    }
    assert_eq!(seen.header("host"), Some(origin.addr.to_string()));
    assert!(head.contains("\r\nX-Custom-CASE: kept as is\r\n"), "{head}");
    assert!(
        head.contains("\r\nVia: 1.0 first-hop, 1.1 proxy-server\r\nAccept: */*\r\n"),
        "{head}"
    );
    for gone in ["keep-alive:", "x-origin-hop", "proxy-authenticate"] {
        assert!(
            !response.contains(gone),
            "{gone} reached the client:\n{response}"
        );
    }
    assert!(response.contains("x-kept: yes"));
    assert!(response.contains("via: 1.1 proxy-server"));
}

#[tokio::test]
async fn every_method_with_a_body() {
    let origin =
        Origin::start(|seen| ok(&format!("{} {}", seen.request_line(), seen.body.len()))).await;
    let proxy = Proxy::start().await;
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let (code, body, err) = curl(&[
            "-x",
            &proxy.url(),
            "-X",
            method,
            "--data-binary",
            "0123456789",
            &origin.url("/m"),
        ])
        .await;
        assert_eq!(code, 0, "{method}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("{method} /m HTTP/1.1 10")
        );
    }
    assert!(origin.requests().iter().all(|s| s.body == b"0123456789"));
}

#[tokio::test]
async fn chunked_request_and_response_bodies() {
    let origin = Origin::start(|seen| {
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in seen.body.chunks(3) {
            reply.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            reply.extend_from_slice(piece);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        reply
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         4;name=v\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n",
        origin.url("/c")
    );
    let response = exchange(proxy.addr, request.as_bytes()).await;
    let seen = &origin.requests()[0];
    assert_eq!(seen.body, b"abcdefghij");
    assert!(
        seen.raw
            .ends_with(b"\r\n\r\n4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen.raw)
    );
    let text = String::from_utf8_lossy(&response);
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n1\r\nj\r\n0\r\n\r\n"),
        "{text}"
    );
    // curl decodes the re-encoded body.
    let (code, body, _) = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "xyz",
        &origin.url("/c"),
    ])
    .await;
    assert_eq!((code, body), (0, b"xyz".to_vec()));
}

#[tokio::test]
async fn other_transfer_codings_are_kept_for_the_client() {
    let origin = Origin::start(|seen| {
        let te = if seen.target() == "/gzip-chunked" {
            "gzip, chunked"
        } else {
            "gzip"
        };
        let body = if te == "gzip" {
            "GZ"
        } else {
            "2\r\nGZ\r\n0\r\n\r\n"
        };
        let close = if te == "gzip" {
            "Connection: close\r\n"
        } else {
            ""
        };
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n{close}\r\n{body}").into_bytes()
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/gzip-chunked")
    );
    let response = String::from_utf8(exchange(proxy.addr, request.as_bytes()).await).unwrap();
    assert!(
        response.contains("Transfer-Encoding: gzip, chunked\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\n2\r\nGZ\r\n0\r\n\r\n"),
        "{response}"
    );
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/gzip")
    );
    let response = String::from_utf8(exchange(proxy.addr, request.as_bytes()).await).unwrap();
    assert!(
        response.contains("Transfer-Encoding: gzip\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nGZ"), "{response}");
}

#[tokio::test]
async fn http10_client_gets_chunked_body_decoded() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()
    })
    .await;
    let proxy = Proxy::start().await;
    let request = format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/"));
    let response = String::from_utf8(exchange(proxy.addr, request.as_bytes()).await).unwrap();
    assert!(
        !response.to_ascii_lowercase().contains("transfer-encoding"),
        "{response}"
    );
    assert!(response.contains("Connection: close\r\n"));
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");
}

#[tokio::test]
async fn head_204_and_304_have_no_body() {
    let origin = Origin::start(|seen| {
        let line = seen.request_line();
        if line.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec()
        } else if line.contains("/204") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n".to_vec()
        }
    })
    .await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for (method, path) in [
        ("HEAD", "/head"),
        ("GET", "/204"),
        ("GET", "/304"),
        ("HEAD", "/again"),
    ] {
        let request = format!("{method} {} HTTP/1.1\r\nHost: o\r\n\r\n", origin.url(path));
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        let text = String::from_utf8_lossy(&head);
        assert!(text.ends_with("\r\n\r\n"), "{method} {path}: {text}");
        if method == "HEAD" || path == "/304" {
            assert!(text.contains("Content-Length: 1000\r\n"), "{text}");
        }
    }
    // All four answers arrived on one connection with no stray body bytes between them.
    assert_eq!(origin.request_count(), 4);
}

#[tokio::test]
async fn keep_alive_on_both_sides() {
    let origin = Origin::fixed("again").await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..5 {
        let request = format!("GET {} HTTP/1.1\r\nHost: o\r\n\r\n", origin.url("/k"));
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.ends_with(b"again"));
    }
    assert_eq!(origin.request_count(), 5);
    assert_eq!(
        origin.connection_count(),
        1,
        "origin connection was not reused"
    );
    // curl sees one client connection for several URLs.
    let (code, _, err) = curl(&[
        "-x",
        &proxy.url(),
        &origin.url("/a"),
        &origin.url("/b"),
        "-w",
        "%{num_connects}\n",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    // HTTP/1.0 with keep-alive persists; Connection: close is honoured.
    let request = format!(
        "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        origin.url("/k10")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = String::from_utf8(read_response(&mut stream).await).unwrap();
    assert!(
        response.contains("Connection: keep-alive\r\n"),
        "{response}"
    );
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/last")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let rest = read_to_close(&mut stream).await;
    assert!(rest.ends_with(b"again"));
}

#[tokio::test]
async fn origin_closing_its_connection_is_honoured() {
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
    })
    .await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..3 {
        let request = format!("GET {} HTTP/1.1\r\nHost: o\r\n\r\n", origin.url("/"));
        stream.write_all(request.as_bytes()).await.unwrap();
        assert!(read_response(&mut stream).await.ends_with(b"ok"));
    }
    assert_eq!(origin.connection_count(), 3);
}

#[tokio::test]
async fn expect_100_continue() {
    let origin = Origin::start(|seen| ok(&format!("{}", seen.body.len()))).await;
    let proxy = Proxy::start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "PUT {} HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        origin.url("/e")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let interim = read_response(&mut stream).await;
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        origin.request_count(),
        0,
        "the origin saw the request before the body"
    );
    stream.write_all(b"12345").await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with(b"HTTP/1.1 200") && response.ends_with(b"5"));
    assert!(origin.requests()[0].header("expect").is_none());
    // curl with a large body uses Expect itself.
    let file = std::env::temp_dir().join(format!("proxy-expect-{}", std::process::id()));
    std::fs::write(&file, vec![b'x'; 2 * 1024 * 1024]).unwrap();
    let data = format!("@{}", file.display());
    let (code, body, err) = curl(&[
        "-x",
        &proxy.url(),
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "9",
        "--data-binary",
        &data,
        &origin.url("/e"),
    ])
    .await;
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, (2 * 1024 * 1024).to_string().as_bytes());
}

#[tokio::test]
async fn interim_responses_are_passed_on() {
    let origin = Origin::start(|_| b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
    let proxy = Proxy::start().await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/")
    );
    let response = String::from_utf8(exchange(proxy.addr, request.as_bytes()).await).unwrap();
    assert!(
        response.starts_with(
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
        ),
        "{response}"
    );
}

#[tokio::test]
async fn ipv6_listener_and_origin() {
    let Some(origin) = Origin::start_on_v6("an IPv6 listener and origin", |_| ok("v6")).await
    else {
        return;
    };
    let proxy = Proxy::start_on("[::1]:0", |_| {})
        .await
        .expect("::1 serves the origin, so the proxy can listen there too");
    let (code, body, err) = curl(&[
        "-x",
        &proxy.url(),
        &format!("http://[::1]:{}/", origin.addr.port()),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, b"v6");
    assert_eq!(origin.request_count(), 1);
}
