//! The real binary: started on an ephemeral port and killed on drop (`ProxyProcess`),
//! or run to its exit (`run_binary`); its stderr kept for tests to read; signals; and
//! resident-memory probes from /proc.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;

use super::{POLL_PAUSE, STEP, temp_dir, within};

/// Flags that open the binary up for loopback origins, as `Proxy` does in-process.
pub const LOCAL: [&str; 3] = ["--allow-local-targets", "--connect-ports", "1-65535"];

/// The binary as cargo built it for these tests.
fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"));
    command.env_remove("RUST_LOG").kill_on_drop(true);
    command
}

/// Runs the binary with `args` until it exits (within the step deadline).
pub async fn run_binary(args: &[&str]) -> Output {
    within(binary().args(args).stdin(Stdio::null()).output())
        .await
        .unwrap()
}

/// The real binary, started with `args` on an ephemeral port; killed on drop.
pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
    /// Where its logs go: a fresh temporary folder unless `args` name one.
    pub log_dir: PathBuf,
    /// Every line it wrote to stderr so far.
    pub stderr: Log,
    drain: Option<JoinHandle<()>>,
}

impl ProxyProcess {
    pub async fn start(args: &[&str]) -> ProxyProcess {
        let log_dir = match args.iter().position(|a| *a == "--log-dir") {
            Some(i) => PathBuf::from(args[i + 1]),
            None => temp_dir("logs"),
        };
        let mut child = binary()
            .args(["--port", "0", "--log-dir"])
            .arg(&log_dir)
            .args(
                args.iter()
                    .enumerate()
                    .filter(|(i, a)| **a != "--log-dir" && (*i == 0 || args[i - 1] != "--log-dir"))
                    .map(|(_, a)| a),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Log::default();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        let addr = within(async {
            while let Some(line) = lines.next_line().await.unwrap() {
                sink.push(&line);
                if let Some(addr) = line.split("listening on ").nth(1) {
                    return addr.trim().parse::<SocketAddr>().unwrap();
                }
            }
            panic!("proxy exited before listening:\n{}", sink.text());
        })
        .await;
        // Keep reading so the child never blocks on a full pipe, and tests can look.
        let drain = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.push(&line);
            }
        });
        ProxyProcess {
            addr,
            child,
            log_dir,
            stderr,
            drain: Some(drain),
        }
    }

    /// Sends `signal` (a name `kill` knows, such as `TERM` or `HUP`) to the process.
    pub async fn signal(&self, signal: &str) {
        let status = within(
            tokio::process::Command::new("kill")
                .args([&format!("-{signal}"), &self.pid().to_string()])
                .status(),
        )
        .await
        .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Stops the process with SIGTERM and waits for it; returns its exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        self.signal("TERM").await;
        within(self.child.wait()).await.ok()?.code()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The access log's lines (complete once the process has stopped).
    pub fn access_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_dir.join("access.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// The address of the listener the process announced as `LABEL listener on ADDR`
    /// (`socks5`, `https`), once it has.
    pub async fn listener(&self, label: &str) -> SocketAddr {
        let needle = format!("{label} listener on ");
        self.stderr.wait_for(&needle, 1).await;
        let text = self.stderr.text();
        text.lines()
            .find_map(|line| line.split(&needle).nth(1)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label} listener announced:\n{text}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("the proxy is running")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(drain) = self.drain.take() {
            drain.abort();
        }
    }
}

/// Resident memory of process `pid` in KiB, from /proc; `None` once it has gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The highest resident memory of a process, sampled every [`POLL_PAUSE`] in the
/// background until [`PeakRss::stop`] (or drop).
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    sampler: JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let sampler = {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                while let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                    tokio::time::sleep(POLL_PAUSE).await;
                }
            })
        };
        PeakRss { peak, sampler }
    }

    /// Stops sampling; the peak in KiB.
    pub fn stop(self) -> u64 {
        self.sampler.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

/// Everything a [`ProxyProcess`] has written to stderr so far.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    fn push(&self, line: &str) {
        let mut text = self.0.lock().unwrap();
        text.push_str(line);
        text.push('\n');
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// How many times `needle` occurs in the log.
    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().matches(needle).count()
    }

    /// Waits (within the step deadline) until `needle` has occurred `times` times.
    pub async fn wait_for(&self, needle: &str, times: usize) {
        let found = tokio::time::timeout(STEP, async {
            while self.count(needle) < times {
                tokio::time::sleep(POLL_PAUSE).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "log never showed {needle:?} {times} times:\n{}",
            self.text()
        );
    }
}
