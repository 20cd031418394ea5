//! One serving process's life, from settings to exit code: check and load the files the
//! settings name (every `file:line` error at once, exit code 2), take the listening
//! sockets a service manager or a predecessor passed on, start logging, then — inside the
//! runtime — bind what is left to bind, start the metrics listener, the periodic summary
//! and the `SIGHUP` reloads (one list of everything that is re-read), announce the
//! listeners and summarise what runs (`summary`, with its warnings), say ready, serve until the lifecycle says stop, drain, and flush the logs.
//! What it needs of the environment, the binary reads and hands over ([`Environment`]).

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::handover::{Inherited, ListenEnv, Sockets, Successor, inherit};
use super::lifecycle::{Lifecycle, Stop};
use super::notify::Notifier;
use crate::access::AccessReload;
use crate::config::{Config, Listener, Settings, Source, check_listeners};
use crate::conn::Services;
use crate::files::{Reload, reload_on_sighup};
use crate::health::Health;
use crate::stats::Stats;
use crate::{allocator, logging, metrics};

/// Exit code for bad flags and config files (clap uses it for bad flags too).
pub const EXIT_CONFIG: u8 = 2;

/// What a serving process takes from its environment; the binary reads it, library code
/// never does.
pub struct Environment {
    /// The socket-activation variables (sd_listen_fds(3)).
    pub listen: ListenEnv,
    /// systemd's `NOTIFY_SOCKET`.
    pub notify_socket: Option<OsString>,
    /// How to tell a predecessor that this process is ready (`HANDOVER_NOTIFY_ENV`).
    pub handover_notify: Option<OsString>,
    /// This program as it was started, for SIGUSR2 to start again.
    pub successor: Option<Successor>,
}

/// Serves with `settings` (read from `source`) until stopped; with `check_config`, stops
/// after loading the files and says whether they are good.
pub fn launch(
    settings: Settings,
    source: Source,
    check_config: bool,
    env: Environment,
) -> ExitCode {
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
    let inherited = match inherit(&env.listen, config.listeners.len()) {
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
    crate::access::warn_inspection_inactive(&services.access.snapshot().rules);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        runtime.worker_threads(workers);
    }
    let code = match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(settings, source, services, inherited, env)),
        Err(error) => {
            eprintln!("proxy-server: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    };
    logging.shutdown();
    code
}

/// The serving part of [`launch`], inside the runtime.
async fn serve(
    settings: Settings,
    source: Source,
    mut services: Services,
    inherited: Option<Inherited>,
    env: Environment,
) -> ExitCode {
    tokio::spawn(allocator::purge_freed_memory());
    let config: Config = settings.config.clone();
    let config_file = source.file().map(std::path::Path::to_path_buf);
    let opened = super::open_listeners(&config, settings.metrics.addr, inherited).await;
    let (sockets, metrics_socket) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let handover = Sockets::of(&sockets, metrics_socket.as_ref());
    let health = Health::default();
    let stats = Arc::clone(&services.stats);
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics_socket {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/");
            services.metrics_addr = Some(addr);
        }
        let serving = metrics::serve(listener, stats.clone(), health.clone(), metrics_stopped);
        tokio::spawn(serving);
    }
    let summaries = settings
        .metrics
        .stats_interval
        .map(|every| tokio::spawn(metrics::periodic_summary(stats.clone(), every)));
    tokio::spawn(reload_on_sighup(reloadables(
        &services,
        settings.clone(),
        source,
    )));
    let lifecycle = Lifecycle::new(
        health,
        Notifier::new(env.notify_socket),
        config.timeouts.drain_delay,
        env.successor.map(|successor| (successor, handover)),
    );
    // Every handler is installed (the reloads above, the lifecycle's): deliver what waited.
    super::signals::release_startup_signals();
    announce(&config, &sockets);
    let bound: Vec<Listener> = (config.listeners.iter().zip(&sockets))
        .map(|(listener, socket)| Listener {
            addr: socket.local_addr().unwrap_or(listener.addr),
            ..listener.clone()
        })
        .collect();
    super::summary::log(&settings, &services, &bound, config_file.as_deref());
    lifecycle.ready(env.handover_notify.as_deref());
    let until_stop = async {
        if lifecycle.until_stop().await == Stop::HandedOver {
            // The successor answers on the metrics socket from now on.
            let _ = stop_metrics.send(true);
        }
    };
    super::run(sockets, config, services, until_stop).await;
    let _ = stop_metrics.send(true);
    if let Some(task) = summaries {
        task.abort();
    }
    metrics::log_final_summary(&stats);
    ExitCode::SUCCESS
}

/// Everything a `SIGHUP` re-reads, in order: the access files (with the policy file read
/// again through `source`), each TLS listener's certificate, the PAC file.
fn reloadables(services: &Services, running: Settings, source: Source) -> Vec<Box<dyn Reload>> {
    let access = AccessReload::new(services.access.clone(), move || {
        source.reread_access(&running)
    });
    let mut list: Vec<Box<dyn Reload>> = vec![Box::new(access)];
    for certificates in services.tls.iter().flatten() {
        list.push(Box::new(certificates.clone()));
    }
    if let Some(pac) = &services.pac {
        list.push(Box::new(pac.clone()));
    }
    list
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
