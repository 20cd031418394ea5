//! Shared fixtures for the integration tests: local origins that record the exact bytes
//! they receive, the proxy started in-process or as the real binary on an ephemeral
//! port, and small raw-socket clients. Everything listens on 127.0.0.1 and every wait
//! has a deadline.
#![allow(dead_code)]

pub mod access;
pub mod cache;
pub mod canonical;
pub mod observe;
pub mod raw;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs `fut` with the step deadline, failing the test if it passes.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("step timed out")
}

/// One request as an origin saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The request line and header fields, exactly as received.
    pub head: Vec<u8>,
    /// The body as decoded (chunked framing removed).
    pub body: Vec<u8>,
    /// Every byte of the request as received, framing included.
    pub raw: Vec<u8>,
}

impl Seen {
    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    pub fn request_line(&self) -> String {
        self.head_str().lines().next().unwrap_or("").to_string()
    }

    /// The request target as sent (the second word of the request line).
    pub fn target(&self) -> String {
        self.request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    }

    /// The value of the first header field called `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head_str().split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Vec<u8> + Send + Sync>;

/// A plain-TCP HTTP/1.1 origin: parses each request just enough to find its end, records
/// it, and answers with the bytes the handler returns. Keeps connections alive.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Origin {
    pub async fn start(handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Origin {
        Origin::start_on("127.0.0.1:0", handler)
            .await
            .expect("bind 127.0.0.1")
    }

    /// An origin answering every request with `200` and `body`.
    pub async fn fixed(body: &'static str) -> Origin {
        Origin::start(move |_| ok(body)).await
    }

    async fn serve(self, stream: TcpStream, handler: Handler) {
        let mut reader = BufReader::new(stream);
        while let Some(seen) = read_request(&mut reader).await {
            self.raw.lock().unwrap().extend_from_slice(&seen.raw);
            let reply = handler(&seen);
            self.seen.lock().unwrap().push(seen);
            if reader.get_mut().write_all(&reply).await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&reply).to_ascii_lowercase();
            if text.contains("\r\nconnection: close\r\n") {
                return;
            }
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every byte received, on every connection.
    pub fn received(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A raw TCP origin that writes back whatever it reads, until EOF.
pub async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A `200 OK` with a Content-Length body.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The Content-Length in a lower-cased head, or 0.
fn content_length(head: &str) -> usize {
    head.split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// Reads one request (head and body) as an origin would; `None` at a clean close.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut seen = Seen::default();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        seen.head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    seen.raw = seen.head.clone();
    let head = seen.head_str().to_ascii_lowercase();
    if head.contains("\r\ntransfer-encoding: chunked\r\n") {
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).await.ok()?;
            seen.raw.extend_from_slice(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let size = usize::from_str_radix(text.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            seen.raw.extend_from_slice(&chunk);
            seen.body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                return Some(seen);
            }
        }
    }
    let mut body = vec![0; content_length(&head)];
    reader.read_exact(&mut body).await.ok()?;
    seen.raw.extend_from_slice(&body);
    seen.body = body;
    Some(seen)
}

/// The proxy running in this test's runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        Proxy::start_with(|_| {}).await
    }

    /// Starts the proxy with defaults adjusted by `adjust`. The origins of these tests
    /// live on loopback, so local targets and every CONNECT port are allowed unless
    /// `adjust` says otherwise.
    pub async fn start_with(adjust: impl FnOnce(&mut proxy_server::config::Config)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = local_config(addr, adjust);
        Proxy::serve(listener, config).await
    }

    /// Serves on `listener` with exactly `config`.
    pub async fn serve(listener: TcpListener, config: proxy_server::config::Config) -> Proxy {
        let services = proxy_server::context::Services::load(&config).unwrap();
        Proxy::serve_services(listener, config, services).await
    }

    /// Serves on `listener` with `config` and services the test built (for example to keep
    /// a handle on their statistics).
    pub async fn serve_services(
        listener: TcpListener,
        config: proxy_server::config::Config,
        services: proxy_server::context::Services,
    ) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(proxy_server::server::run(
            listener,
            config,
            services,
            async {
                let _ = stopped.await;
            },
        ));
        Proxy {
            addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown and waits until the server has drained.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            within(done).await.unwrap();
        }
    }

    /// A request on a fresh connection gets a good answer: the proxy is still healthy.
    pub async fn assert_healthy(&self) {
        let origin = Origin::fixed("healthy").await;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.url("/health")
        );
        let response = exchange(self.addr, request.as_bytes()).await;
        assert!(
            response.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        assert!(response.ends_with(b"healthy"));
    }
}

/// The default config for `addr`, opened up for loopback origins, then adjusted.
pub fn local_config(
    addr: SocketAddr,
    adjust: impl FnOnce(&mut proxy_server::config::Config),
) -> proxy_server::config::Config {
    let mut config = proxy_server::config::Config::with_listen(addr);
    config.access.allow_local_targets = true;
    config.access.connect_ports = "1-65535".parse().unwrap();
    adjust(&mut config);
    config
}

/// Flags that open the binary up for loopback origins, as `local_config` does.
pub const LOCAL: [&str; 3] = ["--allow-local-targets", "--connect-ports", "1-65535"];

/// Sends `request` on a fresh connection and reads until the proxy closes it.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

/// Reads until the peer closes (or resets) the connection.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = within(stream.read_to_end(&mut out)).await;
    out
}

/// Reads a message head (through the blank line) byte by byte, so nothing after it is consumed.
pub async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    within(async {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            out.push(byte[0]);
        }
        out
    })
    .await
}

/// Reads one message with a Content-Length body (or none) off a kept-alive connection.
pub async fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = read_head(stream).await;
    within(async {
        let head = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let mut body = vec![0; content_length(&head)];
        stream.read_exact(&mut body).await.unwrap();
        out.extend_from_slice(&body);
        out
    })
    .await
}

/// The status code of a raw response.
pub fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The real binary, started with `args` on an ephemeral port; killed on drop.
pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
    /// Where its logs go: a fresh temporary folder unless `args` name one.
    pub log_dir: std::path::PathBuf,
    /// Every line it wrote to stderr so far.
    pub stderr: Log,
    drain: Option<tokio::task::JoinHandle<()>>,
}

impl ProxyProcess {
    pub async fn start(args: &[&str]) -> ProxyProcess {
        let log_dir = match args.iter().position(|a| *a == "--log-dir") {
            Some(i) => std::path::PathBuf::from(args[i + 1]),
            None => temp_dir("logs"),
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
            .args(["--port", "0", "--log-dir"])
            .arg(&log_dir)
            .args(
                args.iter()
                    .enumerate()
                    .filter(|(i, a)| **a != "--log-dir" && (*i == 0 || args[i - 1] != "--log-dir"))
                    .map(|(_, a)| a),
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = Log::default();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        let addr = within(async {
            while let Some(line) = lines.next_line().await.unwrap() {
                sink.0.lock().unwrap().push_str(&format!("{line}\n"));
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
                sink.0.lock().unwrap().push_str(&format!("{line}\n"));
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

    /// Stops the process with SIGTERM and waits for it; returns its exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        within(self.child.wait()).await.ok()?.code()
    }

    /// The access log's lines (complete once the process has stopped).
    pub fn access_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_dir.join("access.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// A new empty folder under the system temp dir, unique to this process and call.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("proxy-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs curl with `args` and returns (exit status, stdout, stderr).
pub async fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = within(
        tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--noproxy",
                "",
            ])
            .args(args)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .output(),
    )
    .await
    .expect("curl is installed (run.sh test installs it)");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Origin {
    /// As [`Origin::start`], listening on `bind` instead of `127.0.0.1:0` (for example
    /// `127.0.0.2:0` or `[::1]:0`); `None` when this machine cannot listen there.
    pub async fn start_on(
        bind: &str,
        handler: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
    ) -> Option<Origin> {
        let listener = TcpListener::bind(bind).await.ok()?;
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            raw: Arc::default(),
            connections: Arc::default(),
        };
        let handler: Handler = Arc::new(handler);
        let state = origin.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *state.connections.lock().unwrap() += 1;
                tokio::spawn(state.clone().serve(stream, handler.clone()));
            }
        });
        Some(origin)
    }
}

/// Everything a [`ProxyProcess::start_logged`] child has written to stderr so far.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// How many times `needle` occurs in the log.
    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().matches(needle).count()
    }

    /// Waits (within the step deadline) until `needle` has occurred `times` times.
    pub async fn wait_for(&self, needle: &str, times: usize) {
        let log = self.clone();
        let found = tokio::time::timeout(STEP, async move {
            while log.count(needle) < times {
                tokio::time::sleep(Duration::from_millis(20)).await;
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

impl ProxyProcess {
    /// As [`ProxyProcess::start`], with a handle on what the child writes to stderr.
    pub async fn start_logged(args: &[&str]) -> (ProxyProcess, Log) {
        let proxy = ProxyProcess::start(args).await;
        let log = proxy.stderr.clone();
        (proxy, log)
    }
}
