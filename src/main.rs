//! The `proxy-server` binary: parse flags, start logging, bind, run until a signal.

use clap::Parser;
use proxy_server::config::{Cli, Config};
use tokio::net::TcpListener;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level));
    let filter = match filter {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("proxy-server: --log-level: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_cli(&cli);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.workers {
        runtime.worker_threads(workers);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("proxy-server: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("proxy-server: cannot listen on {}: {error}", config.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        tracing::info!("listening on {}", config.listen);
        proxy_server::server::run(listener, config, proxy_server::server::signal()).await;
        std::process::ExitCode::SUCCESS
    })
}
