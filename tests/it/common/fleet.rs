//! Fixtures for the deployment tests: a fleet started by `deploy/fleet.sh` (HAProxy in
//! front of instances of the real binary, PROXY protocol v2, health checks on `/readyz`)
//! and stopped on drop, and load generators whose every request or tunnel opens a fresh
//! connection from a client address distinct from HAProxy's, counting what failed
//! instead of panicking.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::{ESTABLISHED, STEP, temp_dir, within};

/// Where the test clients connect from: not HAProxy's 127.0.0.1, so an access log line
/// naming it proves the address came from the PROXY header.
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// HAProxy's check interval in the tests (the shipped config says 1s).
pub const CHECK_INTER: &str = "200ms";

/// One proxy-server instance of a fleet.
#[derive(Debug, Clone)]
pub struct Instance {
    pub pid: u32,
    pub metrics: SocketAddr,
    pub log_dir: PathBuf,
}

impl Instance {
    pub fn access_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_dir.join("access.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log_dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        is_running(self.pid)
    }
}

/// `deploy/fleet.sh N` with the test binary, HAProxy on a free port, instances on
/// ephemeral ports, a short check interval and a one-second drain delay.
pub struct Fleet {
    pub haproxy: SocketAddr,
    pub instances: Vec<Instance>,
    script: tokio::process::Child,
}

impl Fleet {
    pub async fn start(count: usize) -> Fleet {
        let port = free_port();
        let dir = temp_dir("fleet");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/fleet.sh");
        let mut child = tokio::process::Command::new(script)
            .arg(count.to_string())
            .args(["--", "--allow-local-targets", "--connect-ports", "1-65535"])
            .env("PROXY_SERVER", env!("CARGO_BIN_EXE_proxy-server"))
            .env("FLEET_PORT", port.to_string())
            .env("FLEET_BASE", "0")
            .env("FLEET_METRICS", "0")
            .env("FLEET_DIR", &dir)
            .env("FLEET_INTER", CHECK_INTER)
            .env("FLEET_DRAIN", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("deploy/fleet.sh runs");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut instances = Vec::new();
        within(async {
            while let Some(line) = lines.next_line().await.expect("fleet.sh output") {
                if line.starts_with("fleet ready") {
                    return;
                }
                if line.starts_with("instance ") {
                    instances.push(parse_instance(&line));
                }
            }
            panic!("fleet.sh stopped before the fleet was ready");
        })
        .await;
        assert_eq!(instances.len(), count, "one line per instance");
        Fleet {
            haproxy: SocketAddr::from(([127, 0, 0, 1], port)),
            instances,
            script: child,
        }
    }

    /// Waits until a request through HAProxy succeeds (its first checks are done).
    pub async fn wait_serving(&self, origin: SocketAddr) {
        for _ in 0..250 {
            if request(self.haproxy, origin, "/warm-up").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("HAProxy never passed a request through");
    }
}

impl Drop for Fleet {
    /// SIGTERM to fleet.sh, whose trap stops every instance and HAProxy; waits (bounded).
    fn drop(&mut self) {
        let Some(pid) = self.script.id() else { return };
        signal(pid, "TERM");
        for _ in 0..300 {
            if matches!(self.script.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for instance in &self.instances {
            signal(instance.pid, "KILL");
        }
    }
}

/// `instance 1: pid P proxy ADDR metrics http://ADDR/ logs DIR`.
fn parse_instance(line: &str) -> Instance {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words.iter().position(|w| *w == key).expect(key);
        words[at + 1]
    };
    Instance {
        pid: after("pid").parse().expect("pid"),
        metrics: after("metrics")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("metrics address"),
        log_dir: PathBuf::from(after("logs")),
    }
}

/// A port free a moment ago (HAProxy must be told a number).
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// Sends `signal` (a name `kill` knows) to `pid`; whether it was delivered.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_running(pid: u32) -> bool {
    // A zombie has exited; /proc still lists it until reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
}

/// Waits (bounded) until process `pid` has exited.
pub async fn wait_exit(pid: u32, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while is_running(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(to: SocketAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(CLIENT_IP, 0))
        .map_err(|e| e.to_string())?;
    socket
        .connect(to)
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// One GET for `path` on `origin` through `proxy`, on a fresh connection from
/// [`CLIENT_IP`]; `Err` says what went wrong.
pub async fn request(proxy: SocketAddr, origin: SocketAddr, path: &str) -> Result<(), String> {
    let exchange = async {
        let mut stream = connect(proxy).await?;
        let head = format!(
            "GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if answer.starts_with(b"HTTP/1.1 200") {
            Ok(())
        } else {
            Err(format!(
                "answer: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(80)])
            ))
        }
    };
    tokio::time::timeout(STEP, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// One CONNECT tunnel to the echo server `echo` through `proxy`, 1 KiB echoed.
pub async fn tunnel(proxy: SocketAddr, echo: SocketAddr) -> Result<(), String> {
    let exchange = async {
        let mut stream = connect(proxy).await?;
        let head = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = vec![0u8; ESTABLISHED.len()];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer != ESTABLISHED {
            return Err(format!("answer: {:?}", String::from_utf8_lossy(&answer)));
        }
        let payload = vec![b'x'; 1024];
        stream
            .write_all(&payload)
            .await
            .map_err(|e| e.to_string())?;
        let mut echoed = vec![0u8; payload.len()];
        stream
            .read_exact(&mut echoed)
            .await
            .map_err(|e| e.to_string())?;
        if echoed == payload {
            Ok(())
        } else {
            Err("echo differs".into())
        }
    };
    tokio::time::timeout(STEP, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Requests sent by [`Load`] and those that failed, with the first few reasons.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: usize,
    pub failures: Vec<String>,
}

/// `workers` clients sending requests one after another until stopped (or `max` sent in
/// all); each request is numbered, and a request counts as started-after-`mark` when the
/// mark was set before it began.
pub struct Load {
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Tally, Tally)>>,
    sent: Arc<AtomicUsize>,
}

impl Load {
    pub fn start(proxy: SocketAddr, origin: SocketAddr, workers: usize, max: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mark = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, mark, sent) = (stop.clone(), mark.clone(), sent.clone());
                tokio::spawn(async move {
                    let (mut before, mut after) = (Tally::default(), Tally::default());
                    while !stop.load(Ordering::Relaxed) {
                        let n = sent.fetch_add(1, Ordering::Relaxed);
                        if n >= max {
                            break;
                        }
                        let tally = if mark.load(Ordering::Relaxed) {
                            &mut after
                        } else {
                            &mut before
                        };
                        tally.sent += 1;
                        if let Err(reason) = request(proxy, origin, &format!("/load/{n}")).await {
                            tally.failures.push(reason);
                        }
                    }
                    (before, after)
                })
            })
            .collect();
        Load {
            stop,
            mark,
            tasks,
            sent,
        }
    }

    /// Requests begun so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests begun from now on count as "after".
    pub fn mark(&self) {
        self.mark.store(true, Ordering::Relaxed);
    }

    /// Waits (bounded) until `count` requests have begun.
    pub async fn until_sent(&self, count: usize) {
        within(async {
            while self.sent() < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    /// Marks, lets `more` requests begin, stops, and checks that none failed, before
    /// the mark or after it; the two tallies.
    pub async fn finish_without_failures(self, more: usize) -> (Tally, Tally) {
        self.mark();
        let marked = self.sent();
        self.until_sent(marked + more).await;
        let (before, after) = self.finish().await;
        let failures: Vec<&String> = before.failures.iter().chain(&after.failures).collect();
        assert!(
            failures.is_empty(),
            "{} of {} failed: {:?}",
            failures.len(),
            before.sent + after.sent,
            &failures[..failures.len().min(5)]
        );
        (before, after)
    }

    /// Stops the clients; the requests begun before and after [`Load::mark`].
    pub async fn finish(self) -> (Tally, Tally) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut before, mut after) = (Tally::default(), Tally::default());
        for task in self.tasks {
            let (b, a) = within(task).await.expect("load task");
            before.sent += b.sent;
            before.failures.extend(b.failures);
            after.sent += a.sent;
            after.failures.extend(a.failures);
        }
        (before, after)
    }
}

/// The status `/readyz` answers on the metrics listener `metrics`.
pub async fn readyz(metrics: SocketAddr) -> u16 {
    let request = "GET /readyz HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n";
    super::status(&super::exchange(metrics, request.as_bytes()).await)
}
