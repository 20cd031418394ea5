//! The `proxy-server` binary: parse flags and the configuration file, load the files
//! they name, start logging, bind, run until SIGINT/SIGTERM, then drain and flush. Bad
//! flags or files exit with code 2. `--check-config` stops after loading;
//! `proxy-server explain …` answers one policy question and exits.

use std::process::ExitCode;
use std::sync::Arc;

use proxy_server::Services;
use proxy_server::config::{
    self, Config, Invocation, LoadError, Settings, Source, check_listeners,
};
use proxy_server::stats::Stats;
use proxy_server::{access, explain, logging, metrics, server};
use tokio::net::TcpListener;

/// mimalloc rather than glibc's malloc: tokio allocates each task and each socket's
/// readiness state 128-byte aligned, and glibc pays about 128 bytes of padding for each
/// such allocation, a large part of what an idle connection costs; CPU per request and per
/// GB stayed within the benchmark's noise. `no_thp` keeps it off transparent huge pages,
/// which otherwise inflate the resident size at start. See docs/performance.md,
/// "Allocator" (S5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad flags and config files (clap uses it for bad flags too).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let (settings, check_config, source) = match config::invocation(std::env::args_os().collect()) {
        Ok(Invocation::Serve {
            settings,
            check_config,
            source,
        }) => (*settings, check_config, source),
        Ok(Invocation::Explain(args)) => return explain::run(&args),
        Err(LoadError::Flags(error)) => error.exit(),
        Err(LoadError::File(errors)) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = settings.config.clone();
    if let Err(reason) = check_listeners(&config.listeners) {
        eprintln!("proxy-server: {reason}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut services = match Services::load(&config) {
        Ok(services) => services,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_config {
        println!("proxy-server: configuration OK");
        return ExitCode::SUCCESS;
    }
    let stats = Arc::new(Stats::default());
    let logging = match logging::init(&settings.log, stats.clone()) {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("proxy-server: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    services.use_stats(stats.clone());
    services.access_log = Some(logging.access_log());
    for listener in &config.listeners {
        access::warn_if_open_proxy(listener.addr.ip(), &config.access);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        runtime.worker_threads(workers);
    }
    let code = match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(settings, source, services, stats)),
        Err(error) => {
            eprintln!("proxy-server: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    };
    logging.shutdown();
    code
}

async fn serve(
    settings: Settings,
    source: Source,
    services: Services,
    stats: Arc<Stats>,
) -> ExitCode {
    let config: Config = settings.config.clone();
    let sockets = match server::bind_all(&config) {
        Ok(sockets) => sockets,
        Err((addr, error)) => {
            tracing::error!("cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = settings.metrics.addr {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(
                    "metrics on http://{}/",
                    listener.local_addr().unwrap_or(addr)
                );
                tokio::spawn(metrics::serve(listener, stats.clone(), metrics_stopped));
            }
            Err(error) => {
                tracing::error!("cannot listen on {addr} for metrics: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let summaries = settings
        .metrics
        .stats_interval
        .map(|every| tokio::spawn(metrics::periodic_summary(stats.clone(), every)));
    let running = settings.clone();
    tokio::spawn(access::reload_on_sighup(
        services.access.clone(),
        move || source.reread_access(&running),
    ));
    let certificates = services.tls.iter().flatten().cloned().collect();
    tokio::spawn(server::reload_tls_on_sighup(certificates));
    tokio::spawn(server::reload_pac_on_sighup(services.pac.clone()));
    announce(&config, &sockets);
    server::run(sockets, config, services, server::signal()).await;
    let _ = stop_metrics.send(true);
    if let Some(task) = summaries {
        task.abort();
    }
    metrics::log_final_summary(&stats);
    ExitCode::SUCCESS
}

/// One line per listener, the main one first as `listening on ADDR` (which scripts and
/// tests wait for), then `LABEL listener on ADDR` for the others.
fn announce(config: &Config, sockets: &[TcpListener]) {
    for (i, (listener, socket)) in config.listeners.iter().zip(sockets).enumerate() {
        let bound = socket.local_addr().unwrap_or(listener.addr);
        let label = match (listener.protocol.label(), listener.tls.is_some()) {
            ("http", true) => "https",
            (label, _) => label,
        };
        if i == 0 {
            tracing::info!("listening on {bound}");
            if label != "http" {
                tracing::info!("{label} listener on {bound}");
            }
        } else {
            tracing::info!("{label} listener on {bound}");
        }
    }
}
