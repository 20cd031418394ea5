//! The `proxy-server` binary: parse flags and the configuration file, read what the
//! process needs of its environment, and hand both to the server, which loads the files,
//! starts logging, binds (or takes the listening sockets a service manager or a
//! predecessor passed: `LISTEN_FDS`), serves until SIGINT/SIGTERM or a handover
//! (SIGUSR2), then drains and flushes. Bad flags or files exit with code 2.
//! `--check-config` stops after loading; `proxy-server explain …` answers one policy
//! question and exits; `proxy-server new-ca …` writes an inspection CA and exits. The
//! environment is read here and, for `RUST_LOG`, in `logging`.

use std::path::PathBuf;
use std::process::ExitCode;

use proxy_server::config::{self, Invocation, LoadError};
use proxy_server::server::{
    self, EXIT_CONFIG, Environment, HANDOVER_NOTIFY_ENV, ListenEnv, Successor,
};
use proxy_server::{allocator, explain, inspect};

/// mimalloc rather than glibc's malloc: tokio allocates each task and each socket's
/// readiness state 128-byte aligned, and glibc pays about 128 bytes of padding for each
/// such allocation, a large part of what an idle connection costs; CPU per request and per
/// GB stayed within the benchmark's noise. `no_thp` keeps it off transparent huge pages,
/// which otherwise inflate the resident size at start. See docs/performance.md,
/// "Allocator" (S5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread or file: a SIGHUP or SIGUSR2 while starting waits for its handler.
    server::hold_startup_signals();
    allocator::set_purge_delay();
    match config::invocation(std::env::args_os().collect()) {
        Ok(Invocation::Serve {
            settings,
            check_config,
            source,
        }) => server::launch(*settings, source, check_config, environment()),
        Ok(Invocation::Explain(args)) => explain::run(&args),
        Ok(Invocation::NewCa(request)) => inspect::run_new_ca(&request),
        Err(LoadError::Flags(error)) => error.exit(),
        Err(LoadError::File(errors)) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// What the server takes from the environment.
fn environment() -> Environment {
    let var = |name| std::env::var(name).ok();
    Environment {
        listen: ListenEnv {
            fds: var("LISTEN_FDS"),
            pid: var("LISTEN_PID"),
            names: var("LISTEN_FDNAMES"),
        },
        notify_socket: std::env::var_os("NOTIFY_SOCKET"),
        handover_notify: std::env::var_os(HANDOVER_NOTIFY_ENV),
        successor: successor(),
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
                Some(original) => PathBuf::from(original),
                None => path,
            }
        })
        .unwrap_or_else(|| first.into());
    Some(Successor {
        program,
        args: args.collect(),
    })
}
