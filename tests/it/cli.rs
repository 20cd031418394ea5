//! The binary as a program: bad flags and bad rules or users files stop it with exit
//! code 2 and a message naming every problem (`file:line: reason`), `--help` lists the
//! flags, and SIGTERM drains requests in flight before exiting 0.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::observe::{Running, get_json};
use crate::common::*;

/// Runs the binary to its exit on port 0 with `args`: (exit code, stderr).
async fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = run_binary(&[&["--port", "0"], args].concat()).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

#[tokio::test]
async fn bad_flags_exit_2_with_a_message() {
    for args in [
        &["--port", "http"][..],
        &["--max-connections", "0"],
        &["--idle-timeout", "-1"],
        &["--no-such-flag"],
    ] {
        let out = run_binary(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{args:?}"
        );
    }
    let help = run_binary(&["--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--host",
        "--port",
        "--max-connections",
        "--connect-timeout",
        "--header-timeout",
        "--idle-timeout",
        "--workers",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[tokio::test]
async fn bad_files_fail_the_start_with_every_line() {
    let files = Scratch::new("bad-files");
    let rules = files.write(
        "rules.txt",
        "# rules\ngood.test\n10.0.0.1/8\n*bad.test\nok.test   # fine\na..b.test\n.squid.test\n",
    );
    let users = files.write(
        "users.txt",
        "alice:pw\nnocolon\nalice:again\nbob:$apr1$x$y\ncarol:\n",
    );
    let (code, stderr) = run(&["--blacklist", text(&rules), "--auth-file", text(&users)]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let expected = [
        (&rules, [3, 4, 6, 7].as_slice()),
        (&users, [2, 3, 4, 5].as_slice()),
    ];
    for (path, lines) in expected {
        for line in 1..=7 {
            let prefix = format!("{}:{line}: ", text(path));
            let found = stderr.lines().find(|l| l.starts_with(&prefix));
            assert_eq!(found.is_some(), lines.contains(&line), "{prefix}\n{stderr}");
            if let Some(found) = found {
                assert!(found.len() > prefix.len() + 5, "a reason follows: {found}");
            }
        }
    }
    assert!(stderr.contains("did you mean 10.0.0.0/8?"), "{stderr}");
    let missing = files.path("missing.txt");
    let (code, stderr) = run(&["--blacklist", text(&missing)]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read rules file", text(&missing))),
        "{stderr}"
    );
}

#[tokio::test]
async fn binary_exits_0_on_sigterm_after_draining() {
    let (slow, received) = slow_origin(Duration::from_millis(700), ok("slow but complete")).await;
    let mut proxy = ProxyProcess::start(&LOCAL).await;
    let addr = proxy.addr;
    let request = format!("GET http://{slow}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let in_flight = tokio::spawn(async move { exchange(addr, request.as_bytes()).await });
    wait_until("the request reaches the origin", STEP, || async {
        received.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(proxy.stop().await, Some(0));
    let response = within(in_flight).await.unwrap();
    assert!(response.ends_with(b"slow but complete"));
}

/// A drain ends kept-alive connections between requests, but a connection accepted just
/// before it (as under load, or in a handover) gets its first request answered, with
/// `Connection: close`, rather than being closed unread and reset.
#[tokio::test]
async fn a_drain_closes_idle_connections_and_answers_new_ones() {
    let origin = Origin::fixed("answered in the drain").await;
    let mut running = Running::start(&["--metrics-addr", "127.0.0.1:0"]).await;
    let metrics = running.metrics.expect("metrics address");
    let request = format!("GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
    let mut idle = within(TcpStream::connect(running.addr())).await.unwrap();
    within(idle.write_all(request.as_bytes())).await.unwrap();
    assert_eq!(status(&read_response(&mut idle).await), 200);
    let mut fresh = within(TcpStream::connect(running.addr())).await.unwrap();
    wait_until("the proxy holds both connections", STEP, || async {
        get_json(metrics, "/stats").await["connections_active"].as_u64() == Some(2)
    })
    .await;

    running.proxy.signal("TERM").await;
    let (rest, _) = read_until_end(&mut idle).await;
    assert!(rest.is_empty(), "the idle connection closes without a word");
    within(fresh.write_all(request.as_bytes())).await.unwrap();
    let (response, ending) = read_until_end(&mut fresh).await;
    assert_eq!(
        ending,
        Ending::Closed,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(status(&response), 200);
    assert!(String::from_utf8_lossy(&response).contains("Connection: close"));
    assert!(response.ends_with(b"answered in the drain"));
    let code = within(running.proxy.child.wait()).await.unwrap();
    assert_eq!(code.code(), Some(0));
}

/// A new connection that stays silent (a browser's preconnection) holds a drain for a
/// moment, not for the header timeout: with a minute of header timeout and of grace,
/// the process still exits within the test's step.
#[tokio::test]
async fn a_silent_new_connection_does_not_hold_the_drain() {
    let mut running = Running::start(&[
        "--metrics-addr",
        "127.0.0.1:0",
        "--header-timeout",
        "60",
        "--shutdown-grace",
        "60",
    ])
    .await;
    let metrics = running.metrics.expect("metrics address");
    let mut silent = within(TcpStream::connect(running.addr())).await.unwrap();
    wait_until("the proxy holds the connection", STEP, || async {
        get_json(metrics, "/stats").await["connections_active"].as_u64() == Some(1)
    })
    .await;
    running.proxy.signal("TERM").await;
    let code = within(running.proxy.child.wait()).await.unwrap();
    assert_eq!(code.code(), Some(0));
    let (rest, _) = read_until_end(&mut silent).await;
    assert!(rest.is_empty());
}

/// The lines of `stderr` that `module` (a target such as `server::summary`) logged at
/// `level`, without their time and target.
fn logged<'a>(stderr: &'a str, level: &str, module: &str) -> Vec<&'a str> {
    let target = format!("{level} proxy_server::{module}: ");
    stderr
        .lines()
        .filter_map(|line| line.split_once(&target).map(|(_, message)| message))
        .collect()
}

#[tokio::test]
async fn the_start_up_summary_says_what_runs_and_warns_of_local_targets() {
    let files = Scratch::new("summary");
    let users = files.write("users.txt", "alice:alicepw\nbob:bobpw\n");
    let blocked = files.write("blocked.txt", "blocked.example\n");
    let config = files.write(
        "proxy.toml",
        "cache = true\ncache_size = 16\n\n[[rules]]\naction = \"allow\"\nusers = [\"alice\"]\n\n\
         [[rules]]\naction = \"deny\"\n\n[[listen]]\naddr = \"127.0.0.1:0\"\nprotocol = \"socks5\"\n",
    );
    let logs = files.path("logs");
    let [config, users, blocked, logs] =
        [config, users, blocked, logs].map(|p| p.display().to_string());
    let mut args = vec![
        "--config",
        &config,
        "--auth-file",
        &users,
        "--blacklist",
        &blocked,
    ];
    args.extend(["--metrics-addr", "127.0.0.1:0", "--log-dir", &logs]);
    args.extend(LOCAL);
    let mut proxy = ProxyProcess::start(&args).await;
    wait_until("the summary's last line", STEP, || {
        let text = proxy.stderr.text();
        async move { text.contains("allow_local_targets") }
    })
    .await;
    let stderr = proxy.stderr.text();
    let info = logged(&stderr, "INFO", "server::summary");
    let metrics = logged(&stderr, "INFO", "server::process")
        .into_iter()
        .find_map(|line| line.strip_prefix("metrics on "))
        .expect("the metrics line")
        .to_string();
    let socks = logged(&stderr, "INFO", "server::process")
        .into_iter()
        .find_map(|line| line.strip_prefix("socks5 listener on "))
        .expect("the SOCKS5 listener's line")
        .to_string();
    assert_eq!(
        info,
        [
            format!("listeners: http {}, socks5 {socks}", proxy.addr),
            format!(
                "users: 2 in {users} (login required); clients: any address that reaches a listener"
            ),
            format!("policy: {config}, 2 rules; blacklist {blocked}"),
            format!("cache: 16 MiB; logs: {logs}; metrics: {metrics}"),
        ],
        "{stderr}"
    );
    // Loopback listeners with a login: the only unsafe choice is --allow-local-targets.
    assert_eq!(
        logged(&stderr, "WARN", "server::summary"),
        [
            "allow_local_targets: clients can reach this machine's own loopback services through the proxy"
        ],
        "{stderr}"
    );
    assert!(!stderr.contains("OPEN PROXY"), "{stderr}");
    assert_eq!(proxy.stop().await, Some(0));
}
