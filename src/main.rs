//! The `proxy-server` binary: parse flags and the configuration file, load the files
//! they name, start logging, bind (or take the listening sockets a service manager or a
//! predecessor passed: `LISTEN_FDS`), run until SIGINT/SIGTERM or a handover (SIGUSR2),
//! then drain and flush. Bad flags or files exit with code 2. `--check-config` stops
//! after loading; `proxy-server explain …` answers one policy question and exits. The
//! environment is read here and nowhere else.

use std::process::ExitCode;
use std::sync::Arc;

use proxy_server::Services;
use proxy_server::config::{
    self, Config, Invocation, LoadError, Settings, Source, check_listeners,
};
use proxy_server::health::Health;
use proxy_server::server::{
    HANDOVER_NOTIFY_ENV, HandoverSockets, Inherited, Lifecycle, ListenEnv, Notifier, Stop,
    Successor,
};
use proxy_server::stats::Stats;
use proxy_server::{access, allocator, explain, logging, metrics, server};
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
    // Before any thread or file: a SIGHUP or SIGUSR2 while starting waits for its handler.
    server::hold_startup_signals();
    allocator::set_purge_delay();
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
    let inherited = match proxy_server::server::inherit(&listen_env(), config.listeners.len()) {
        Ok(inherited) => inherited,
        Err(reason) => {
            eprintln!("proxy-server: {reason}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
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
        Ok(runtime) => runtime.block_on(serve(settings, source, services, stats, inherited)),
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
    inherited: Option<Inherited>,
) -> ExitCode {
    tokio::spawn(allocator::purge_freed_memory());
    let config: Config = settings.config.clone();
    let opened = server::open_listeners(&config, settings.metrics.addr, inherited).await;
    let (sockets, metrics_socket) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let handover = HandoverSockets::of(&sockets, metrics_socket.as_ref());
    let health = Health::default();
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics_socket {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/");
        }
        let serving = metrics::serve(listener, stats.clone(), health.clone(), metrics_stopped);
        tokio::spawn(serving);
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
    let lifecycle = Lifecycle::new(
        health,
        Notifier::new(std::env::var_os("NOTIFY_SOCKET")),
        config.timeouts.drain_delay,
        successor().map(|successor| (successor, handover)),
    );
    // Every handler is installed (the reloads above, the lifecycle's): deliver what waited.
    server::release_startup_signals();
    announce(&config, &sockets);
    lifecycle.ready(std::env::var_os(HANDOVER_NOTIFY_ENV).as_deref());
    let until_stop = async {
        if lifecycle.until_stop().await == Stop::HandedOver {
            // The successor answers on the metrics socket from now on.
            let _ = stop_metrics.send(true);
        }
    };
    server::run(sockets, config, services, until_stop).await;
    let _ = stop_metrics.send(true);
    if let Some(task) = summaries {
        task.abort();
    }
    metrics::log_final_summary(&stats);
    ExitCode::SUCCESS
}

/// The socket-activation variables (sd_listen_fds(3)).
fn listen_env() -> ListenEnv {
    let var = |name| std::env::var(name).ok();
    ListenEnv {
        fds: var("LISTEN_FDS"),
        pid: var("LISTEN_PID"),
        names: var("LISTEN_FDNAMES"),
    }
}

/// This program as it was started, for SIGUSR2 to start again (an upgrade replaces the
/// file at the same path).
fn successor() -> Option<Successor> {
    let mut args = std::env::args_os();
    let first = args.next()?;
    let program = std::env::current_exe()
        .ok()
        .map(|path| {
            // /proc/self/exe names a replaced binary "PATH (deleted)"; the new one is at PATH.
            let text = path.to_string_lossy();
            match text.strip_suffix(" (deleted)") {
                Some(original) => std::path::PathBuf::from(original),
                None => path,
            }
        })
        .unwrap_or_else(|| first.into());
    Some(Successor {
        program,
        args: args.collect(),
    })
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
