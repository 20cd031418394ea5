//! Logging: the access log, the diagnostics log and the console, none of which may stall a
//! connection task.
//!
//! Owns the `--log-*` flags, the global `tracing` subscriber (diagnostics to stderr and to
//! `DIR/proxy.log`) and the access log `DIR/access.log`. Every destination is a
//! [`sink::LineSink`]: producers queue whole lines without blocking, one writer thread per
//! destination writes them into a [`rotate::RotatingFile`] (or stderr). A line that cannot be
//! queued is counted in [`Stats`] and reported in the diagnostics log; [`Logging::shutdown`]
//! writes out everything queued before returning. This module decides nothing about requests;
//! the connection code hands it finished [`AccessRecord`]s.

mod record;
mod rotate;
mod sink;
mod throttle;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use crate::stats::Outcome;
use crate::stats::Stats;
pub use record::{
    AccessRecord, CacheResult, rfc3339_millis, squid_result_code, write_json_line, write_squid_line,
};
pub use rotate::{RotatingFile, RotationPolicy};
pub use sink::{DropReporter, LineSink};
pub use throttle::{Throttle, WARNING_INTERVAL};

/// Default directory for `access.log` and `proxy.log`.
pub const DEFAULT_LOG_DIR: &str = "logs";
/// Default size, in MiB, past which a log file is rotated.
pub const DEFAULT_LOG_MAX_SIZE_MIB: u64 = 10;
/// Default number of rotated files kept per log.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Largest accepted `--log-max-size`; keeps the byte count far from overflow.
pub const MAX_LOG_MAX_SIZE_MIB: u64 = 1 << 20;
/// Access lines queued before new ones are dropped: about two seconds of disk stall for a
/// very busy proxy, a few MiB of memory (see docs/performance.md, "Access log queue size").
pub const ACCESS_QUEUE_LINES: usize = 32_768;
/// Diagnostic lines queued per destination (file and console) before new ones are dropped.
pub const DIAGNOSTIC_QUEUE_LINES: usize = 8_192;

const ACCESS_LOG_FILE: &str = "access.log";
const DIAGNOSTIC_LOG_FILE: &str = "proxy.log";

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Squid's native access.log layout plus request bytes and outcome
    Squid,
    /// One JSON object per line
    Json,
}

/// Where and how the proxy writes its logs.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Directory for access.log and proxy.log (created if missing).
    pub dir: PathBuf,
    /// Access log line format.
    pub format: LogFormat,
    /// When both logs rotate and how many old files are kept.
    pub rotation: RotationPolicy,
    /// Console and proxy.log level or filter; `RUST_LOG` overrides it.
    pub level: String,
}

/// Handle for writing access records; cheap to clone into every connection task.
#[derive(Debug, Clone)]
pub struct AccessLog {
    sink: LineSink,
    format: LogFormat,
}

impl AccessLog {
    /// Starts an access log writing `format` lines to `path`, rotated by `policy`. Losses are
    /// counted in `stats` and reported through `tracing` (so they land in `proxy.log`).
    pub fn spawn(
        path: &Path,
        format: LogFormat,
        policy: RotationPolicy,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let file = RotatingFile::open(path, policy)?;
        let reporter: DropReporter = Box::new(|count, reason, _output: &mut dyn Write| {
            tracing::warn!(lines = count, reason, "access log lines dropped");
        });
        let sink = LineSink::spawn(
            "access-log",
            Box::new(file),
            ACCESS_QUEUE_LINES,
            stats,
            reporter,
        )?;
        Ok(Self { sink, format })
    }

    /// Queues one line for `record`. Never blocks; a full queue drops the line and counts it.
    pub fn write(&self, record: &AccessRecord) {
        let mut line = Vec::with_capacity(256);
        match self.format {
            LogFormat::Squid => write_squid_line(record, &mut line),
            LogFormat::Json => write_json_line(record, &mut line),
        }
        self.sink.send(line);
    }

    /// Lines this access log has lost so far.
    pub fn dropped(&self) -> u64 {
        self.sink.dropped()
    }

    /// Writes out every queued line and stops the writer. Idempotent.
    pub fn shutdown(&self) {
        self.sink.shutdown();
    }
}

/// Owns the logging writer threads. Dropping it (or calling [`Logging::shutdown`]) flushes
/// every queued line; keep it alive in `main` until the server has drained.
#[derive(Debug)]
pub struct Logging {
    access: AccessLog,
    diagnostics: LineSink,
    console: LineSink,
    /// Set once the closing loss notice has been considered, so `shutdown` then `drop`
    /// prints it at most once.
    closed: AtomicBool,
}

/// Installs the global `tracing` subscriber (console and `DIR/proxy.log`) filtered by `level`
/// (an `EnvFilter` directive such as `info` or `proxy_server=debug`; `RUST_LOG`, when set,
/// takes precedence) and opens `DIR/access.log`. Fails if the directory or a file cannot be
/// created, the filter does not parse, or a global subscriber is already installed.
pub fn init(settings: &LogSettings, stats: Arc<Stats>) -> anyhow::Result<Logging> {
    let dir = &settings.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    let policy = settings.rotation;
    let filter = level_filter(&settings.level)?;

    let diagnostic_path = dir.join(DIAGNOSTIC_LOG_FILE);
    let diagnostic_file = RotatingFile::open(&diagnostic_path, policy)
        .with_context(|| format!("cannot open {}", diagnostic_path.display()))?;
    let diagnostics = spawn_diagnostic_sink("proxy-log", Box::new(diagnostic_file), &stats)?;
    let console = spawn_diagnostic_sink("console-log", Box::new(std::io::stderr()), &stats)?;

    let access_path = dir.join(ACCESS_LOG_FILE);
    let access = AccessLog::spawn(&access_path, settings.format, policy, stats)
        .with_context(|| format!("cannot open {}", access_path.display()))?;

    let console_layer = tracing_subscriber::fmt::layer()
        .with_writer(console.clone())
        .with_ansi(std::io::stderr().is_terminal());
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(diagnostics.clone())
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(console_layer)
        .with(file_layer)
        .try_init()
        .context("a global tracing subscriber is already installed")?;
    Ok(Logging {
        access,
        diagnostics,
        console,
        closed: AtomicBool::new(false),
    })
}

/// `RUST_LOG` wins when set and non-empty, so an operator can raise one module's level
/// without touching the service's flags.
fn level_filter(level: &str) -> anyhow::Result<EnvFilter> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid RUST_LOG filter {directives:?}")),
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid log level {level:?}")),
    }
}

/// A diagnostics destination notes its own losses inline: it cannot report through `tracing`
/// into the very queue that overflowed.
fn spawn_diagnostic_sink(
    name: &str,
    output: Box<dyn Write + Send>,
    stats: &Arc<Stats>,
) -> anyhow::Result<LineSink> {
    let reporter: DropReporter = Box::new(|count, reason, output: &mut dyn Write| {
        let line = format!(
            "{}  WARN proxy_server::logging: {count} diagnostic lines dropped ({reason})\n",
            rfc3339_millis(SystemTime::now())
        );
        let _ = output.write_all(line.as_bytes());
    });
    LineSink::spawn(
        name,
        output,
        DIAGNOSTIC_QUEUE_LINES,
        Arc::clone(stats),
        reporter,
    )
    .with_context(|| format!("cannot start the {name} writer thread"))
}

impl Logging {
    /// A handle for connection tasks to write access records with.
    pub fn access_log(&self) -> AccessLog {
        self.access.clone()
    }

    /// Lines lost so far across the access log, `proxy.log` and the console.
    pub fn dropped_lines(&self) -> u64 {
        self.access.dropped() + self.diagnostics.dropped() + self.console.dropped()
    }

    /// Writes out everything queued and stops the writer threads: the access log first (its
    /// loss report goes to the diagnostics log), then `proxy.log`, then the console. Events
    /// logged afterwards are counted as dropped. If any line was ever lost, a last notice goes
    /// straight to stderr, the only destination left. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        self.access.shutdown();
        self.diagnostics.shutdown();
        self.console.shutdown();
        let dropped = self.dropped_lines();
        if !self.closed.swap(true, Ordering::Relaxed) && dropped > 0 {
            eprintln!(
                "proxy-server: {dropped} log lines were dropped while running (queue full or write error)"
            );
        }
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.shutdown();
    }
}
