//! HTTPS keep-alive load, optionally inside CONNECT tunnels (to a plain or a TLS
//! proxy, see `proxy`) or SOCKS5 ones: `--conns`
//! connections each open a tunnel, do one TLS handshake, then send GETs back
//! to back until `--secs` have passed. Reports completed responses, non-200
//! statuses and connection errors; a row with any of those is not trusted.

use crate::args::Flags;
use crate::{http, proxy};
use anyhow::{Context, Result};

use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    non_200: AtomicU64,
    errors: AtomicU64,
}

struct Job {
    route: proxy::Route,
    target: String,
    server_name: ServerName<'static>,
    request: Vec<u8>,
    deadline: Instant,
    connector: TlsConnector,
    counts: Arc<Counts>,
}

pub async fn run(flags: &Flags) -> Result<()> {
    let conns: usize = flags.get("conns", Some(64))?;
    let secs: f64 = flags.get("secs", None)?;
    let ca: String = flags.get("ca", None)?;
    let host: String = flags.get("server-name", Some("localhost".to_string()))?;
    let path: String = flags.get("path", Some("/small".to_string()))?;
    let start = Instant::now();
    let job = Arc::new(Job {
        route: proxy::Route::from_flags(flags)?,
        target: flags.get("target", None)?,
        server_name: ServerName::try_from(host.clone())?,
        request: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        deadline: start + Duration::from_secs_f64(secs),
        connector: proxy::connector(&ca)?,
        counts: Arc::default(),
    });
    let mut tasks = JoinSet::new();
    for _ in 0..conns {
        let job = Arc::clone(&job);
        tasks.spawn(async move {
            if let Err(error) = connection(&job).await {
                job.counts.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("tls-load: {error:#}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let counts = &job.counts;
    println!(
        "{{\"requests\":{},\"non_200\":{},\"errors\":{},\"secs\":{elapsed:.6}}}",
        counts.ok.load(Ordering::Relaxed),
        counts.non_200.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn connection(job: &Job) -> Result<()> {
    let tcp = proxy::open(&job.route, &job.target).await?;
    let mut tls = job.connector.connect(job.server_name.clone(), tcp).await?;
    let mut buffer = Vec::with_capacity(16 * 1024);
    // Each request waits at most until the deadline plus a grace period.
    let grace = Duration::from_secs(5);
    while Instant::now() < job.deadline {
        let exchange = async {
            tls.write_all(&job.request).await?;
            http::read_response(&mut tls, &mut buffer).await
        };
        let status = tokio::time::timeout_at((job.deadline + grace).into(), exchange)
            .await
            .context("response timed out")??;
        let counter = if status == 200 {
            &job.counts.ok
        } else {
            &job.counts.non_200
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
