//! The proxy in this test's runtime, on an ephemeral loopback port. This is the one place
//! that turns a test's settings into a running server (`Config::with_listen`,
//! `Services::load`, `server::run`): tests never call those themselves, so when the
//! library's entry points change, only this file follows.

use std::net::SocketAddr;
use std::sync::Arc;

use proxy_server::Services;
use proxy_server::config::Config;
use proxy_server::stats::{Snapshot, Stats};
use tokio::sync::oneshot;

use super::{Origin, exchange, within};

/// The proxy running in this test's runtime; it shuts down when dropped.
pub struct Proxy {
    /// The main listener's address.
    pub addr: SocketAddr,
    /// Every listener's bound address, in the order of `Config::listeners`.
    pub addrs: Vec<SocketAddr>,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        Proxy::start_with(|_| {}).await
    }

    /// Starts the proxy on 127.0.0.1 with defaults adjusted by `adjust`. The origins of
    /// these tests live on loopback, so local targets and every CONNECT port are allowed
    /// unless `adjust` says otherwise.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Proxy {
        Proxy::start_on("127.0.0.1:0", adjust)
            .await
            .expect("bind 127.0.0.1")
    }

    /// As [`Proxy::start_with`], listening on `bind` (for example `[::1]:0`); `None` when
    /// this machine cannot listen there. `adjust` may add listeners (on port 0); each is
    /// bound here and its address is in [`Proxy::addrs`].
    pub async fn start_on(bind: &str, adjust: impl FnOnce(&mut Config)) -> Option<Proxy> {
        Proxy::start_serving(bind, adjust, |_| {}).await
    }

    /// As [`Proxy::start_with`], with the loaded services adjusted too (the limiter's
    /// capacity, to reach its bounds with a few clients).
    pub async fn start_with_services(
        adjust: impl FnOnce(&mut Config),
        services: impl FnOnce(&mut Services),
    ) -> Proxy {
        Proxy::start_serving("127.0.0.1:0", adjust, services)
            .await
            .expect("bind 127.0.0.1")
    }

    async fn start_serving(
        bind: &str,
        adjust: impl FnOnce(&mut Config),
        adjust_services: impl FnOnce(&mut Services),
    ) -> Option<Proxy> {
        let mut config = Config::with_listen(bind.parse().ok()?);
        config.access.allow_local_targets = true;
        config.access.connect_ports = "1-65535".parse().unwrap();
        adjust(&mut config);
        let sockets = proxy_server::server::bind_all(&config).ok()?;
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        let addr = addrs[0];
        let mut services = Services::load(&config).unwrap();
        adjust_services(&mut services);
        let stats = Arc::clone(&services.stats);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let done = tokio::spawn(proxy_server::server::run(
            sockets, config, services, shutdown,
        ));
        Some(Proxy {
            addr,
            addrs,
            stats,
            stop: Some(stop),
            done: Some(done),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's statistics as they stand.
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
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
