//! A restart on one host that refuses nothing: SIGUSR2 starts a successor on the same
//! listening sockets (passed as descriptors, the systemd `LISTEN_FDS` way); once it says
//! READY=1 the old process stops accepting and drains. Under a steady load of new
//! connections, not one is refused and not one request fails, and every request is
//! logged exactly once across the two processes.

use std::time::Duration;

use crate::common::fleet::{Load, is_running, readyz, signal, wait_exit};
use crate::common::{LOCAL, Origin, ProxyProcess, within};

/// Stops the successor when the test ends, however it ends.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        if is_running(self.0) {
            signal(self.0, "KILL");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_under_load_refuses_no_connection() {
    let origin = Origin::fixed("restart").await;
    let mut args = LOCAL.to_vec();
    args.extend(["--metrics-addr", "127.0.0.1:0"]);
    let mut old = ProxyProcess::start(&args).await;
    let metrics: std::net::SocketAddr = old
        .stderr
        .text()
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("metrics address");

    let load = Load::start(old.addr, origin.addr, 8, 100_000);
    load.until_sent(300).await;
    old.signal("USR2").await;
    old.stderr.wait_for("handed the listeners over", 1).await;
    let text = old.stderr.text();
    let pid: u32 = text
        .split("started a successor")
        .nth(1)
        .and_then(|rest| rest.split("pid=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("successor pid in the log");
    let successor = Successor(pid);
    let code = within(old.child.wait()).await.expect("old process exits");
    assert_eq!(code.code(), Some(0), "{}", old.stderr.text());

    // Only the successor is left to answer now.
    let (before, after) = load.finish_without_failures(300).await;
    assert!(after.sent >= 300);
    assert_eq!(readyz(metrics).await, 200, "the successor serves /readyz");

    assert!(signal(successor.0, "TERM"));
    wait_exit(successor.0, Duration::from_secs(15)).await;
    let logged = old
        .access_log()
        .iter()
        .filter(|l| l.contains("/load/"))
        .count();
    assert_eq!(
        logged,
        before.sent + after.sent,
        "each request logged once by one of the two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_cannot_start_leaves_the_old_process_serving() {
    let origin = Origin::fixed("still here").await;
    let mut args = LOCAL.to_vec();
    // The successor reads the same flags; a log folder it cannot create makes it fail
    // after the old one started (the folder is removed and replaced by a file).
    let dir = crate::common::temp_dir("handover-fails");
    let logs = dir.join("logs");
    let logs_text = logs.to_string_lossy().into_owned();
    args.extend(["--log-dir", &logs_text]);
    let proxy = ProxyProcess::start(&args).await;
    std::fs::remove_dir_all(&logs).expect("remove the log folder");
    std::fs::write(&logs, "not a folder").expect("a file in its place");
    proxy.signal("USR2").await;
    proxy
        .stderr
        .wait_for("handover failed, still serving", 1)
        .await;
    let answer = crate::common::fleet::request(proxy.addr, origin.addr, "/after").await;
    assert_eq!(answer, Ok(()));
}
