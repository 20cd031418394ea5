//! Basic proxy authentication end to end (each malformed form, clear and bcrypt users,
//! the credentials kept from origins and logs), and SIGHUP reloads of the access files
//! while a tunnel stays up. Files that fail the start are in `cli`.

use crate::common::access::*;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn bad_credentials_get_407_with_the_challenge() {
    let files = Scratch::new("auth-407");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("must not be reached").await;
    let authority = origin.addr.to_string();
    let cases = [
        ("missing", String::new()),
        ("empty", "Proxy-Authorization: \r\n".to_string()),
        (
            "wrong scheme",
            "Proxy-Authorization: Bearer cGxhaW46eA==\r\n".to_string(),
        ),
        ("scheme only", "Proxy-Authorization: Basic\r\n".to_string()),
        (
            "bad base64",
            "Proxy-Authorization: Basic !!not*base64!!\r\n".to_string(),
        ),
        (
            "no colon",
            proxy_authorization("Basic", b"plainclear:pass#1"),
        ),
        ("no colon at all", proxy_authorization("Basic", b"plain")),
        ("non-UTF-8", proxy_authorization("Basic", b"plain:\xff\xfe")),
        ("wrong password", login((CLEAR_USER.0, "clear:pass#2"))),
        ("password prefix", login((CLEAR_USER.0, "clear:pass"))),
        ("wrong case user", login(("PLAIN", CLEAR_USER.1))),
        ("unknown user", login(("nobody", CLEAR_USER.1))),
        (
            "wrong bcrypt password",
            login((BCRYPT_USER.0, "bcrypt pass 3")),
        ),
        (
            "other user's password",
            login((BCRYPT_USER.0, CLEAR_USER.1)),
        ),
    ];
    for (what, header) in &cases {
        assert_challenged(&get(proxy.addr, &authority, header).await, what);
    }
    // A refused CONNECT closes: what follows the head is never read as a request.
    let smuggled = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n{}\r\n",
        origin.url("/smuggled"),
        login(CLEAR_USER)
    );
    for (what, header) in &cases {
        assert_challenged(
            &refused_connect(proxy.addr, &authority, header, &smuggled).await,
            what,
        );
    }
    assert_eq!(origin.connection_count(), 0);
    // Healthy: a fresh connection with good credentials is served.
    let healthy = Origin::fixed("healthy").await;
    let response = get(proxy.addr, &healthy.addr.to_string(), &login(CLEAR_USER)).await;
    assert!(
        response.ends_with(b"healthy"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

/// Two `Proxy-Authorization` fields are ambiguous (which one counts?): 400, even when
/// one of them is good, and nothing reaches the origin.
#[tokio::test]
async fn repeated_credentials_are_refused() {
    let files = Scratch::new("auth-repeated");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("must not be reached").await;
    let authority = origin.addr.to_string();
    let good = login(CLEAR_USER);
    let bad = login((CLEAR_USER.0, "wrong"));
    for extra in [
        format!("{good}{bad}"),
        format!("{bad}{good}"),
        format!("{good}{good}"),
    ] {
        let response = get(proxy.addr, &authority, &extra).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 400 "), "{extra:?}: {text}");
    }
    assert_eq!(origin.connection_count(), 0);
}

#[tokio::test]
async fn good_credentials_pass_and_never_reach_the_origin() {
    let files = Scratch::new("auth-ok");
    let users = users_file(&files);
    let proxy = Proxy::start_with(|c| c.access.auth_file = Some(users)).await;
    let origin = Origin::fixed("welcome").await;
    let authority = origin.addr.to_string();
    let mut tokens = Vec::new();
    for user in [CLEAR_USER, BCRYPT_USER] {
        let credentials = format!("{}:{}", user.0, user.1);
        tokens.push(base64(&credentials));
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let response = get(
                proxy.addr,
                &authority,
                &proxy_authorization(scheme, credentials.as_bytes()),
            )
            .await;
            assert!(
                response.ends_with(b"welcome"),
                "{scheme} {}: {}",
                user.0,
                String::from_utf8_lossy(&response)
            );
        }
        let mut tunnel = open_tunnel(proxy.addr, &authority, &login(user)).await;
        let request = format!("GET / HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        tunnel.write_all(request.as_bytes()).await.unwrap();
        assert!(read_response(&mut tunnel).await.ends_with(b"welcome"));
        let url = origin.url("/curl");
        let (code, out, err) = curl(&["-x", &proxy.url(), "-U", &credentials, &url]).await;
        assert_eq!((code, out.as_slice()), (0, &b"welcome"[..]), "{err}");
        let (code, out, err) = curl(&["-p", "-x", &proxy.url(), "-U", &credentials, &url]).await;
        assert_eq!((code, out.as_slice()), (0, &b"welcome"[..]), "{err}");
    }
    let (code, out, _) = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &origin.url("/"),
    ])
    .await;
    assert_eq!((code, out.as_slice()), (0, &b"407"[..]));
    // Seven requests per user, by hand and by curl; none carried the credentials on.
    assert_eq!(origin.request_count(), 14);
    let received = String::from_utf8_lossy(&origin.received()).to_ascii_lowercase();
    assert!(!received.contains("proxy-authorization"), "{received}");
    for secret in [CLEAR_USER.1, BCRYPT_USER.1, &tokens[0], &tokens[1]] {
        assert!(
            !received.contains(&secret.to_ascii_lowercase()),
            "{secret} reached the origin"
        );
    }
}

#[tokio::test]
async fn every_request_on_a_kept_alive_connection_is_checked() {
    let files = Scratch::new("keep-alive");
    let users = users_file(&files);
    let rules = files.write("rules.txt", "blocked.test\n");
    let proxy = Proxy::start_with(|c| {
        c.access.auth_file = Some(users);
        c.access.blacklist = Some(rules);
    })
    .await;
    let origin = Origin::fixed("welcome").await;
    let request =
        |extra: &str| format!("GET {} HTTP/1.1\r\nHost: x\r\n{extra}\r\n", origin.url("/"));
    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream
        .write_all(request(&login(CLEAR_USER)).as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"welcome"));
    // Credentials are not remembered per connection: each request carries its own.
    stream.write_all(request("").as_bytes()).await.unwrap();
    assert_challenged(&read_to_close(&mut stream).await, "second request");

    let mut stream = within(TcpStream::connect(proxy.addr)).await.unwrap();
    stream
        .write_all(request(&login(BCRYPT_USER)).as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.ends_with(b"welcome"));
    let blocked = format!(
        "GET http://blocked.test/ HTTP/1.1\r\nHost: x\r\n{}\r\n",
        login(BCRYPT_USER)
    );
    stream.write_all(blocked.as_bytes()).await.unwrap();
    assert_forbidden(&read_to_close(&mut stream).await, BLOCKED, "second request");
    // Credentials are checked first: a stranger learns nothing about the list.
    assert_challenged(&get(proxy.addr, "blocked.test", "").await, "stranger");
    assert_eq!(origin.request_count(), 2);
    let response = get(proxy.addr, &origin.addr.to_string(), &login(CLEAR_USER)).await;
    assert!(response.ends_with(b"welcome"));
}

#[tokio::test]
async fn passwords_never_reach_the_log() {
    let files = Scratch::new("auth-log");
    let users = users_file(&files);
    let mut args = vec!["--log-level", "debug", "--auth-file", text(&users)];
    args.extend(LOCAL);
    let mut proxy = ProxyProcess::start(&args).await;
    let log = proxy.stderr.clone();
    let origin = Origin::fixed("welcome").await;
    let echo = echo_origin().await;
    let authority = origin.addr.to_string();
    assert!(
        get(proxy.addr, &authority, &login(CLEAR_USER))
            .await
            .ends_with(b"welcome")
    );
    assert!(
        get(proxy.addr, &authority, &login(BCRYPT_USER))
            .await
            .ends_with(b"welcome")
    );
    drop(open_tunnel(proxy.addr, &echo.to_string(), &login(CLEAR_USER)).await);
    let wrong = ("plain", "wrong-secret-4711");
    assert_challenged(&get(proxy.addr, &authority, &login(wrong)).await, "wrong");
    assert_challenged(
        &get(
            proxy.addr,
            &authority,
            &proxy_authorization("Basic", b"nocolon-secret-0815"),
        )
        .await,
        "no colon",
    );
    assert_challenged(
        &refused_connect(proxy.addr, &authority, &login(wrong), "").await,
        "CONNECT",
    );
    // Stopping flushes the access log: six records, one per exchange.
    assert_eq!(proxy.stop().await, Some(0));
    let access = proxy.access_log();
    assert_eq!(access.len(), 6, "{access:#?}");
    let proxy_log = std::fs::read_to_string(proxy.log_dir.join("proxy.log")).unwrap_or_default();
    let text = format!("{}\n{}\n{}", access.join("\n"), proxy_log, log.text());
    assert!(
        text.contains("plain") && text.contains("hashed"),
        "user names belong in the log:\n{text}"
    );
    for user in [
        CLEAR_USER,
        BCRYPT_USER,
        wrong,
        ("nocolon", "nocolon-secret-0815"),
    ] {
        let token = base64(format!("{}:{}", user.0, user.1));
        assert!(
            !text.contains(user.1),
            "password {:?} logged:\n{text}",
            user.1
        );
        assert!(!text.contains(&token), "credentials token logged:\n{text}");
    }
}

#[tokio::test]
async fn sighup_reload_swaps_rules_while_a_tunnel_stays_up() {
    let files = Scratch::new("reload");
    let rules = files.write("rules.txt", "# nothing blocked yet\n");
    let mut args = vec!["--blacklist", text(&rules)];
    args.extend(LOCAL);
    let mut proxy = ProxyProcess::start(&args).await;
    let log = proxy.stderr.clone();
    let echo = echo_origin().await;
    let first = Origin::fixed("first").await;
    let second = Origin::start_on("127.0.0.2:0", |_| ok("second"))
        .await
        .expect("127.0.0.2 is on loopback");
    let (first, second) = (first.addr.to_string(), second.addr.to_string());
    let mut tunnel = open_tunnel(proxy.addr, &echo.to_string(), "").await;
    assert_echoes(&mut tunnel, b"before").await;
    assert!(get(proxy.addr, &second, "").await.ends_with(b"second"));
    assert_unresolved(&get(proxy.addr, "x.reload.test", "").await, "before");

    files.write("rules.txt", "127.0.0.2/32\n*.reload.test\n");
    proxy.signal("HUP").await;
    wait_for_status(proxy.addr, &second, 403).await;
    assert_forbidden(
        &get(proxy.addr, "x.reload.test", "").await,
        BLOCKED,
        "added",
    );
    assert!(get(proxy.addr, &first, "").await.ends_with(b"first"));
    assert_echoes(&mut tunnel, b"after adding").await;

    // A broken file leaves the rules in force, although the new text drops them.
    files.write("rules.txt", "# lost the rules\n10.0.0.1/8\n");
    proxy.signal("HUP").await;
    log.wait_for(&format!("{}:2: ", text(&rules)), 1).await;
    assert_forbidden(&get(proxy.addr, &second, "").await, BLOCKED, "kept");

    files.write("rules.txt", "# open again\n");
    proxy.signal("HUP").await;
    wait_for_status(proxy.addr, &second, 200).await;
    assert_unresolved(&get(proxy.addr, "x.reload.test", "").await, "removed");
    assert_echoes(&mut tunnel, b"after removing").await;

    files.write("rules.txt", "127.0.0.2/32\n*.reload.test\nnot a rule\n");
    proxy.signal("HUP").await;
    log.wait_for(&format!("{}:3: ", text(&rules)), 1).await;
    assert!(get(proxy.addr, &second, "").await.ends_with(b"second"));
    assert_echoes(&mut tunnel, b"after a broken reload").await;
    assert!(proxy.is_running(), "the proxy died");
    assert_eq!(log.count("access files reloaded"), 2);
    assert!(get(proxy.addr, &first, "").await.ends_with(b"first"));
}

#[tokio::test]
async fn sighup_right_after_start_is_a_reload() {
    let files = Scratch::new("early-hangup");
    let rules = files.write("rules.txt", "blocked.test\n");
    for _ in 0..3 {
        let mut proxy = ProxyProcess::start(&["--blacklist", text(&rules)]).await;
        let log = proxy.stderr.clone();
        // As a supervisor might: reload as soon as the proxy says it is listening.
        proxy.signal("HUP").await;
        log.wait_for("access files reloaded", 1).await;
        assert!(proxy.is_running(), "SIGHUP stopped the proxy");
        assert_forbidden(&get(proxy.addr, "blocked.test", "").await, BLOCKED, "after");
    }
}
