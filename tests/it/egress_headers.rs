//! The header controls, seen at an origin that records the exact bytes it receives and
//! by the client: `--via on|off`, each `--forwarded-for` mode (Squid's `forwarded_for`),
//! the `[headers]` add and remove lists for requests and responses, and the fields no
//! setting can bring back (hop-by-hop, proxy credentials), refused at start.

use crate::common::*;

const SENT: &str = "GET {url} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
                    X-Secret: s\r\nX-Kept: k\r\nProxy-Authorization: Basic Y2xpZW50OnB3\r\n\
                    Connection: close\r\n\r\n";

/// The origin's answer: a `Server` field the lists may remove.
fn answer(_: &Seen) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nServer: origin/1\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

/// One request through a proxy started with `args`: (what the origin received, the
/// response the client got).
async fn through(args: &[&str]) -> (String, String) {
    let mut all = LOCAL.to_vec();
    all.extend_from_slice(args);
    let proxy = ProxyProcess::start(&all).await;
    let origin = Origin::start(answer).await;
    let request = SENT.replace("{url}", &origin.url("/h"));
    let response = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );
    let received = String::from_utf8(origin.received()).unwrap();
    (received, String::from_utf8(response).unwrap())
}

#[tokio::test]
async fn by_default_via_is_added_and_forwarded_for_passes_as_sent() {
    let (received, response) = through(&[]).await;
    assert_eq!(
        received,
        "GET /h HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Secret: s\r\n\
         X-Kept: k\r\nVia: 1.1 proxy-server\r\n\r\n"
            .replace("Host: x", &format!("Host: {}", host_of(&received)))
    );
    assert!(
        response.contains("\r\nVia: 1.1 proxy-server\r\n"),
        "{response}"
    );
    assert!(response.contains("\r\nServer: origin/1\r\n"));
}

#[tokio::test]
async fn via_off_leaves_via_out_both_ways() {
    let (received, response) = through(&["--via", "off"]).await;
    assert!(
        !received.to_ascii_lowercase().contains("via:"),
        "{received}"
    );
    assert!(
        !response.to_ascii_lowercase().contains("via:"),
        "{response}"
    );
}

#[tokio::test]
async fn forwarded_for_modes_follow_squid() {
    for (mode, expected) in [
        ("on", Some("10.0.0.1, 127.0.0.1")),
        ("off", Some("10.0.0.1, unknown")),
        ("delete", None),
        ("transparent", Some("10.0.0.1")),
    ] {
        let (received, _) = through(&["--forwarded-for", mode]).await;
        let fields: Vec<&str> = received
            .lines()
            .filter_map(|l| l.strip_prefix("X-Forwarded-For: "))
            .collect();
        assert_eq!(
            fields,
            expected.into_iter().collect::<Vec<_>>(),
            "{mode}: {received}"
        );
    }
}

#[tokio::test]
async fn header_lists_remove_and_add_on_requests_responses_and_cache_hits() {
    let files = Scratch::new("egress-headers");
    let config = files.write(
        "proxy.toml",
        "cache = true\n[headers]\nrequest_add = [\"X-Team: a\"]\nrequest_remove = [\"x-secret\"]\n\
         response_add = [\"X-Served-By: edge\"]\nresponse_remove = [\"Server\"]\n",
    );
    let mut all = LOCAL.to_vec();
    all.extend(["--config", text(&config)]);
    let proxy = ProxyProcess::start(&all).await;
    let origin = Origin::start(|_| {
        b"HTTP/1.1 200 OK\r\nServer: origin/1\r\nCache-Control: max-age=60\r\n\
          Content-Length: 2\r\n\r\nok"
            .to_vec()
    })
    .await;
    let request = SENT.replace("{url}", &origin.url("/h"));
    let mut responses = Vec::new();
    for _ in 0..2 {
        let response = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(
            status(&response),
            200,
            "{}",
            String::from_utf8_lossy(&response)
        );
        responses.push(String::from_utf8(response).unwrap());
    }
    assert_eq!(
        origin.request_count(),
        1,
        "the second answer is a cache hit"
    );
    let received = String::from_utf8(origin.received()).unwrap();
    assert!(
        received.contains("\r\nX-Kept: k\r\nX-Team: a\r\nVia: 1.1 proxy-server\r\n"),
        "{received}"
    );
    assert!(!received.contains("X-Secret"), "{received}");
    assert!(
        !received
            .to_ascii_lowercase()
            .contains("proxy-authorization")
    );
    for response in &responses {
        assert!(response.contains("\r\nX-Served-By: edge\r\n"), "{response}");
        assert!(!response.contains("Server:"), "{response}");
    }
    assert!(responses[1].contains("HIT"), "{}", responses[1]);
}

#[tokio::test]
async fn fields_the_proxy_writes_itself_cannot_be_added() {
    let files = Scratch::new("egress-headers-bad");
    let config = files.write(
        "bad.toml",
        "[headers]\nrequest_add = [\n  \"X-Ok: 1\",\n  \"Proxy-Authorization: Basic eDp5\",\n]\n\
         response_add = [\"Connection: keep-alive\"]\n",
    );
    let out = run_binary(&["--config", text(&config), "--check-config"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}:4: header: Proxy-Authorization is written by the proxy"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6: header: Connection")),
        "{stderr}"
    );
}

/// The Host field the proxy wrote (the origin's address).
fn host_of(received: &str) -> String {
    received
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap()
        .to_string()
}
