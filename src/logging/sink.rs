//! A bounded, non-blocking line queue drained by one writer thread.
//!
//! Owns the hand-off between tasks that produce log lines and the thread that writes them.
//! A producer never waits: it `try_send`s a complete line, and if the queue is full the line is
//! dropped *and counted* (per sink and in [`Stats`]); the writer thread reports new drops
//! through the sink's [`DropReporter`] when the queue next runs dry, at most once per
//! [`WARNING_INTERVAL`] (a report carries every drop since the last), and once more at
//! shutdown if any are unreported. On shutdown the
//! writer drains everything already queued, flushes and is joined, so no accepted line is lost.
//!
//! Why not `tracing_appender::non_blocking`: its `WorkerGuard` (0.2.5) waits 100 ms to queue
//! the shutdown and then at most one second for the worker, and returns silently when that
//! runs out, so a slow disk at shutdown could lose queued lines unnoticed; joining our own
//! thread makes "everything queued is written" a guarantee.
//! The same sink feeds the access log, `proxy.log` and the console.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

use super::throttle::{Throttle, WARNING_INTERVAL};
use crate::stats::Stats;

/// Called on the writer thread with the number of lines lost since the last call, a reason and
/// the sink's own output (so a diagnostics sink can note its own losses inline). A reporter
/// writing there must hand over each line in one `write_all`, as the rotating file only cuts
/// between writes.
pub type DropReporter = Box<dyn FnMut(u64, &str, &mut dyn Write) + Send>;

/// How long the writer lets lines gather while they keep coming. Under load a batch of
/// lines then costs one wake-up and one write; a quiet log still writes each line at once.
/// Waking per line cost two futex calls and one write per request, most of the proxy's
/// CPU time under S1's load (see docs/performance.md, "Log writer batching" (S1)).
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

enum Message {
    Line(Vec<u8>),
    Shutdown,
}

/// What producers hold: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LineSink {
    shared: Arc<Shared>,
}

struct Shared {
    sender: SyncSender<Message>,
    closed: AtomicBool,
    dropped: AtomicU64,
    stats: Arc<Stats>,
    /// Taken once by `shutdown`; a `Mutex` only because shutdown may be reached from `Drop`
    /// and an explicit call alike. Never touched on the write path.
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSink")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LineSink {
    /// Starts a writer thread named `name` that writes queued lines into `output`.
    pub fn spawn(
        name: &str,
        output: Box<dyn Write + Send>,
        capacity: usize,
        stats: Arc<Stats>,
        reporter: DropReporter,
    ) -> io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            sender,
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            stats,
            worker: Mutex::new(None),
        });
        let writer = Writer {
            output,
            reporter,
            shared: Arc::clone(&shared),
            reported: 0,
            reports: Throttle::new(WARNING_INTERVAL),
        };
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || writer.run(receiver))?;
        if let Ok(mut slot) = shared.worker.lock() {
            *slot = Some(handle);
        }
        Ok(Self { shared })
    }

    /// Queues one complete line (including its `\n`). Never blocks.
    pub fn send(&self, line: Vec<u8>) {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.count_drop();
            return;
        }
        match self.shared.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.shared.count_drop(),
        }
    }

    /// Lines this sink has lost (queue full, write error, or sent after shutdown).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes out everything queued, flushes and stops the writer thread. Idempotent; lines
    /// sent afterwards are counted as dropped.
    pub fn shutdown(&self) {
        let handle = match self.shared.worker.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(handle) = handle else { return };
        // A blocking send is fine here: the writer is draining, so space appears, and the
        // Shutdown marker lands behind every line accepted so far.
        let _ = self.shared.sender.send(Message::Shutdown);
        let _ = handle.join();
    }
}

impl Shared {
    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.stats.log_line_dropped();
    }
}

struct Writer {
    output: Box<dyn Write + Send>,
    reporter: DropReporter,
    shared: Arc<Shared>,
    reported: u64,
    /// Keeps reports to one per interval: a full disk fails every write, and each report
    /// would otherwise be one more line for sinks that may sit on the same disk.
    reports: Throttle,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Message>) {
        let mut busy = false;
        loop {
            let message = match receiver.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Empty) => {
                    self.idle();
                    if busy {
                        // Lines are flowing: let the next ones gather instead of being
                        // woken (a futex per line) and flushing (a write per line).
                        busy = false;
                        std::thread::sleep(BATCH_INTERVAL);
                        continue;
                    }
                    match receiver.recv() {
                        Ok(message) => message,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match message {
                Message::Line(line) => {
                    busy = true;
                    self.write_line(&line);
                }
                Message::Shutdown => break,
            }
        }
        // Refuse new lines, then write whatever slipped in before the flag was seen.
        self.shared.closed.store(true, Ordering::Release);
        while let Ok(Message::Line(line)) = receiver.try_recv() {
            self.write_line(&line);
        }
        if let Err(error) = self.output.flush() {
            self.report_now(&format!("flush error: {error}"));
        }
        self.report_now("queue full");
    }

    fn write_line(&mut self, line: &[u8]) {
        if let Err(error) = self.output.write_all(line) {
            self.shared.count_drop();
            self.report(&format!("write error: {error}"));
        }
    }

    /// Runs whenever the queue is empty: flush so `tail -f` sees lines promptly, and report
    /// drops since the last report.
    fn idle(&mut self) {
        if let Err(error) = self.output.flush() {
            self.report(&format!("flush error: {error}"));
        }
        self.report("queue full");
    }

    /// Reports drops since the last report, unless one was made less than an interval ago
    /// (they are then reported with the next).
    fn report(&mut self, reason: &str) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported && self.reports.due().is_some() {
            self.report_now(reason);
        }
    }

    fn report_now(&mut self, reason: &str) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            (self.reporter)(dropped - self.reported, reason, &mut *self.output);
            self.reported = dropped;
            let _ = self.output.flush();
        }
    }
}

/// A per-event writer handed to `tracing_subscriber::fmt`: the formatter builds the whole
/// event in memory and writes it with one `write_all`, so one `write` call is one line.
pub struct SinkWriter<'a> {
    sink: &'a LineSink,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter { sink: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;
    use std::time::Duration;

    /// An output that blocks each write until the test lets it go, and records what it got.
    struct GatedOutput {
        gate: Arc<Mutex<()>>,
        entered: Sender<()>,
        written: Sender<Vec<u8>>,
    }

    impl Write for GatedOutput {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let _open = self
                .gate
                .lock()
                .map_err(|_| io::Error::other("gate poisoned"))?;
            let _ = self.written.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink over a [`GatedOutput`], the gate, what the output received, and the stats.
    struct Gated {
        sink: LineSink,
        gate: Arc<Mutex<()>>,
        /// One message each time the writer starts a write (before waiting at the gate).
        entered: Receiver<()>,
        written: Receiver<Vec<u8>>,
        stats: Arc<Stats>,
    }

    fn gated_sink(capacity: usize) -> Gated {
        let gate = Arc::new(Mutex::new(()));
        let (entered_sender, entered) = mpsc::channel();
        let (written_sender, written) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let output = GatedOutput {
            gate: Arc::clone(&gate),
            entered: entered_sender,
            written: written_sender,
        };
        let reporter: DropReporter = Box::new(|count, reason, out: &mut dyn Write| {
            let _ = out.write_all(format!("DROPPED {count} {reason}\n").as_bytes());
        });
        let sink = LineSink::spawn(
            "test-sink",
            Box::new(output),
            capacity,
            stats.clone(),
            reporter,
        )
        .expect("spawn");
        Gated {
            sink,
            gate,
            entered,
            written,
            stats,
        }
    }

    fn text(lines: &Receiver<Vec<u8>>) -> Vec<String> {
        lines
            .try_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    #[test]
    fn overflow_is_counted_and_reported_and_queued_lines_survive_shutdown() {
        let capacity = 4;
        let gated = gated_sink(capacity);
        let held = gated.gate.lock().expect("gate");
        // The writer dequeues the first line and stops at the gate: the queue is now empty.
        gated.sink.send(b"line 0\n".to_vec());
        gated
            .entered
            .recv_timeout(Duration::from_secs(5))
            .expect("writer reached the gate");
        // Exactly `capacity` more fit; the rest are dropped and counted.
        for n in 1..=capacity + 3 {
            gated.sink.send(format!("line {n}\n").into_bytes());
        }
        assert_eq!(gated.sink.dropped(), 3);
        drop(held);
        gated.sink.shutdown();

        let lines = text(&gated.written);
        let expected: Vec<String> = (0..=capacity)
            .map(|n| format!("line {n}\n"))
            .chain(std::iter::once("DROPPED 3 queue full\n".to_owned()))
            .collect();
        assert_eq!(
            lines, expected,
            "queued lines in order, then the loss report"
        );
        assert_eq!(gated.stats.snapshot().log_lines_dropped, 3);
    }

    /// An output on a full disk: every write fails.
    struct FullDisk;

    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("No space left on device"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_output_reports_once_per_interval_and_the_rest_at_shutdown() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reports);
        let reporter: DropReporter = Box::new(move |count, reason, _: &mut dyn Write| {
            seen.lock()
                .expect("reports")
                .push((count, reason.to_owned()));
        });
        let stats = Arc::new(Stats::default());
        let sink = LineSink::spawn("full", Box::new(FullDisk), 64, stats.clone(), reporter)
            .expect("spawn");
        // A hundred lines, each in its own batch, all within one interval.
        for n in 0..100 {
            sink.send(format!("line {n}\n").into_bytes());
            std::thread::sleep(Duration::from_millis(1));
        }
        sink.shutdown();
        let reports = reports.lock().expect("reports");
        assert!(
            (1..=2).contains(&reports.len()),
            "one report in the interval and the rest at shutdown: {reports:?}"
        );
        assert!(reports[0].1.starts_with("write error: "), "{reports:?}");
        let total: u64 = reports.iter().map(|(count, _)| count).sum();
        assert_eq!(total, 100, "every lost line is reported: {reports:?}");
        assert_eq!(stats.snapshot().log_lines_dropped, 100);
    }

    #[test]
    fn lines_after_shutdown_are_counted_not_lost_silently() {
        let gated = gated_sink(8);
        gated.sink.send(b"before\n".to_vec());
        gated.sink.shutdown();
        gated.sink.shutdown();
        gated.sink.send(b"after\n".to_vec());
        assert_eq!(text(&gated.written), vec!["before\n".to_owned()]);
        assert_eq!(gated.sink.dropped(), 1);
        assert_eq!(gated.stats.snapshot().log_lines_dropped, 1);
    }
}
