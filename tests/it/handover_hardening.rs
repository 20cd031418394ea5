//! The handover (SIGUSR2) and the drain against what issue #29 found: a local user
//! forging the successor's `READY=1`, a SIGHUP reaching the successor while it starts,
//! and tunnels cut at the end of the shutdown grace leaving no access-log line. Each test
//! runs the real binary with real signals and ends with a request on a fresh connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::fleet::{is_running, request, signal, wait_exit};
use crate::common::{
    ESTABLISHED, LOCAL, Log, Origin, ProxyProcess, STEP, echo_origin, temp_dir, wait_until, within,
};

/// Stops a successor when the test ends, however it ends.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        if is_running(self.0) {
            signal(self.0, "KILL");
        }
    }
}

/// The successor's pid, from the old process's `started a successor` line.
fn successor_pid(log: &Log) -> u32 {
    log.text()
        .split("started a successor")
        .nth(1)
        .and_then(|rest| rest.split("pid=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("successor pid in the log")
}

/// The abstract unix sockets whose names mention proxy-server and `pid`, as any local
/// user reads them in /proc/net/unix (the last column, `@` for the abstract namespace).
/// An attacker would take any; the test keeps to its own proxy's, so as not to disturb
/// proxies that other tests on this machine run.
fn visible_handover_sockets(pid: u32) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let pid = format!("-{pid}-");
    table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|path| path.starts_with('@') && path.contains("proxy-server"))
        .filter(|path| path.contains(&pid))
        .map(str::to_string)
        .collect()
}

/// What a local attacker can do: watch /proc/net/unix and send `READY=1` to every
/// proxy-server socket it finds for `pid`, every half millisecond until `stop` (at most
/// 20 s). Returns how many sends reached a socket.
fn forge_ready(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    std::thread::spawn(move || {
        let sender = std::os::unix::net::UnixDatagram::unbound().expect("a datagram socket");
        let mut delivered = 0;
        for _ in 0..40_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for name in visible_handover_sockets(pid) {
                let name = name.trim_start_matches('@');
                let Ok(address) =
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                else {
                    continue;
                };
                if sender.send_to_addr(b"READY=1", &address).is_ok() {
                    delivered += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        delivered
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ready_during_a_failing_handover_is_ignored() {
    let origin = Origin::fixed("still here").await;
    // The successor reads the same flags; a log folder replaced by a file makes it fail.
    let dir = temp_dir("forged-ready");
    let logs = dir.join("logs");
    let logs_text = logs.to_string_lossy().into_owned();
    let mut args = LOCAL.to_vec();
    args.extend(["--log-dir", &logs_text]);
    let mut proxy = ProxyProcess::start(&args).await;
    std::fs::remove_dir_all(&logs).expect("remove the log folder");
    std::fs::write(&logs, "not a folder").expect("a file in its place");

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = forge_ready(proxy.pid(), Arc::clone(&stop));
    proxy.signal("USR2").await;
    let settled = within(async {
        loop {
            let text = proxy.stderr.text();
            if text.contains("handover failed") || text.contains("handed the listeners over") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let delivered = attacker.join().expect("the attacker thread");
    assert!(
        !settled.contains("handed the listeners over"),
        "a forged READY=1 ({delivered} sent) made it hand over to a failing successor:\n{settled}"
    );
    assert!(
        settled.contains("handover failed, still serving"),
        "{settled}"
    );
    assert_eq!(delivered, 0, "no readiness socket is there to be found");

    // Still the one serving, on a fresh connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(proxy.is_running(), "{}", proxy.stderr.text());
    assert_eq!(request(proxy.addr, origin.addr, "/after").await, Ok(()));
}

/// The children of `parent`, from /proc (the fourth field of each process's stat).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1) == Some(&parent.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_the_successor_starts_does_not_kill_it() {
    let origin = Origin::fixed("reloaded").await;
    let mut old = ProxyProcess::start(&LOCAL).await;
    old.signal("USR2").await;
    // SIGHUP the successor from the moment it exists until the handover is settled,
    // every millisecond: some reach it while it loads its files.
    let mut hangups = 0;
    let mut successor = None;
    for _ in 0..STEP.as_millis() {
        let text = old.stderr.text();
        if text.contains("handed the listeners over") || text.contains("handover failed") {
            break;
        }
        if successor.is_none() {
            successor = children_of(old.pid()).first().copied();
        }
        if let Some(pid) = successor {
            // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } == 0 {
                hangups += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let text = old.stderr.text();
    assert!(hangups > 0, "the successor was never seen:\n{text}");
    assert!(
        text.contains("handed the listeners over"),
        "the successor did not survive {hangups} SIGHUPs while starting:\n{text}"
    );
    let pid = successor_pid(&old.stderr);
    let successor = Successor(pid);
    let code = within(old.child.wait()).await.expect("old process exits");
    assert_eq!(code.code(), Some(0), "{}", old.stderr.text());
    assert!(
        is_running(successor.0),
        "the successor died after {hangups} SIGHUPs:\n{}",
        old.stderr.text()
    );
    assert_eq!(request(old.addr, origin.addr, "/after").await, Ok(()));
}

/// How much a busy tunnel sends at a time, and the pause between two sends.
const CHUNK: usize = 4096;
const PAUSE: Duration = Duration::from_millis(5);

/// A CONNECT tunnel to `echo` through `proxy` that keeps sending a chunk and reading it
/// back until the proxy closes it (or 2,000 rounds); `echoed` counts the bytes that came
/// back.
async fn busy_tunnel(proxy: SocketAddr, echo: SocketAddr, echoed: Arc<AtomicU64>) {
    let mut stream = within(TcpStream::connect(proxy)).await.expect("connect");
    let head = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("CONNECT");
    let mut answer = vec![0u8; ESTABLISHED.len()];
    within(stream.read_exact(&mut answer)).await.expect("200");
    assert_eq!(answer, ESTABLISHED);
    let chunk = vec![b'x'; CHUNK];
    let mut back = vec![0u8; CHUNK];
    for _ in 0..2_000 {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        match tokio::time::timeout(STEP, stream.read_exact(&mut back)).await {
            Ok(Ok(_)) => echoed.fetch_add(CHUNK as u64, Ordering::Relaxed),
            Ok(Err(_)) => return,
            Err(_) => panic!("a tunnel stalled"),
        };
        tokio::time::sleep(PAUSE).await;
    }
}

/// `count` busy tunnels to `echo` through `proxy`, once each has echoed at least
/// `least` bytes; their tasks and counters.
async fn busy_tunnels(
    proxy: SocketAddr,
    echo: SocketAddr,
    count: usize,
    least: u64,
) -> (Vec<tokio::task::JoinHandle<()>>, Vec<Arc<AtomicU64>>) {
    let counters: Vec<Arc<AtomicU64>> = (0..count).map(|_| Arc::default()).collect();
    let tasks = counters
        .iter()
        .map(|echoed| tokio::spawn(busy_tunnel(proxy, echo, Arc::clone(echoed))))
        .collect();
    wait_until("every tunnel carries data", STEP, || {
        let done = counters.iter().all(|c| c.load(Ordering::Relaxed) >= least);
        async move { done }
    })
    .await;
    (tasks, counters)
}

/// The access-log lines of the tunnels to `echo`, checked: one per tunnel, each marked
/// as cut, each with at least `least` bytes relayed each way.
fn assert_cut_tunnels_logged(lines: &[String], echo: SocketAddr, count: usize, least: u64) {
    let target = format!(" CONNECT {echo} ");
    let logged: Vec<&String> = lines.iter().filter(|l| l.contains(&target)).collect();
    assert_eq!(
        logged.len(),
        count,
        "one line per tunnel to {echo}:\n{}",
        lines.join("\n")
    );
    for line in logged {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[3], "TCP_TUNNEL_ABORTED/200", "{line}");
        let to_client: u64 = fields[4].parse().expect("bytes to the client");
        let from_client: u64 = fields[10].parse().expect("bytes from the client");
        assert!(
            to_client >= ESTABLISHED.len() as u64 + least && from_client >= least,
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_cut_at_the_end_of_the_grace_are_logged_after_sigusr2_and_sigterm() {
    const TUNNELS: usize = 20;
    const LEAST: u64 = 4 * CHUNK as u64;
    let origin = Origin::fixed("after the cut").await;
    let mut args = LOCAL.to_vec();
    args.extend(["--shutdown-grace", "1"]);
    let mut old = ProxyProcess::start(&args).await;

    // A handover: the old process drains, its tunnels outlast the grace and are cut.
    let echo = echo_origin().await;
    let (tasks, _) = busy_tunnels(old.addr, echo, TUNNELS, LEAST).await;
    old.signal("USR2").await;
    old.stderr.wait_for("handed the listeners over", 1).await;
    let successor = Successor(successor_pid(&old.stderr));
    let code = within(old.child.wait()).await.expect("old process exits");
    assert_eq!(code.code(), Some(0), "{}", old.stderr.text());
    for task in tasks {
        within(task).await.expect("tunnel task");
    }
    assert_cut_tunnels_logged(&old.access_log(), echo, TUNNELS, LEAST);
    assert_eq!(request(old.addr, origin.addr, "/after-usr2").await, Ok(()));

    // SIGTERM to the successor: the same after its drain.
    let echo = echo_origin().await;
    let (tasks, _) = busy_tunnels(old.addr, echo, TUNNELS, LEAST).await;
    assert!(signal(successor.0, "TERM"));
    wait_exit(successor.0, STEP).await;
    for task in tasks {
        within(task).await.expect("tunnel task");
    }
    assert_cut_tunnels_logged(&old.access_log(), echo, TUNNELS, LEAST);
}

/// A forwarded response still streaming when the grace ends is recorded too: its task is
/// dropped with the runtime, and its record is written then (`TCP_MISS_ABORTED`) with
/// the bytes it had carried — not lost with the task.
#[tokio::test]
async fn a_response_still_streaming_at_the_end_of_the_grace_is_logged() {
    // An origin that sends a long chunked body slowly.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let mut chunk = b"400\r\n".to_vec();
                chunk.extend([b'x'; 1024]);
                chunk.extend(b"\r\n");
                for _ in 0..600 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    let mut args = LOCAL.to_vec();
    args.extend(["--shutdown-grace", "1"]);
    let mut proxy = ProxyProcess::start(&args).await;
    let mut client = within(TcpStream::connect(proxy.addr)).await.unwrap();
    let request = format!("GET http://{origin}/slow HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 4096];
    let n = within(client.read(&mut first)).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "the response is under way"
    );
    proxy.signal("TERM").await;
    let code = within(proxy.child.wait()).await.expect("the proxy exits");
    assert!(code.success(), "{code:?}");
    let lines = proxy.access_log();
    let line = lines
        .iter()
        .find(|line| line.contains("/slow"))
        .unwrap_or_else(|| panic!("no line for the cut response: {lines:?}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], "TCP_MISS_ABORTED/200", "{line}");
    let from_client: u64 = fields[10].parse().unwrap();
    assert_eq!(from_client, request.len() as u64, "{line}");
    let sent: u64 = fields[4].parse().unwrap();
    assert!(sent > 1024, "the bytes it carried: {line}");
    drop(client);
}
