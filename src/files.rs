//! Reading config files (rules, users): the lines that carry content, the
//! `file:line: reason` errors a bad file is reported with (all of them, together), and
//! the one way files are re-read while the proxy runs (`SIGHUP`, over the list of
//! everything that [`Reload`]s).

use std::fmt;
use std::future::Future;

/// One bad line of a config file, shown as `file:line: reason`; a problem with the
/// whole file (it cannot be read, it is empty) has no line, [`WHOLE_FILE`], and is shown
/// as `file: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// The `line` of a [`LineError`] about the whole file rather than one of its lines
/// (content lines count from 1).
pub const WHOLE_FILE: usize = 0;

impl LineError {
    /// A problem with the whole file, shown as `file: reason`.
    pub fn whole_file(file: impl Into<String>, reason: impl Into<String>) -> LineError {
        LineError {
            file: file.into(),
            line: WHOLE_FILE,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            WHOLE_FILE => write!(f, "{}: {}", self.file, self.reason),
            line => write!(f, "{}:{line}: {}", self.file, self.reason),
        }
    }
}

/// Every bad line of a config file, collected so they are reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileErrors(pub Vec<LineError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// The lines of a config file that carry content: `(line number, trimmed text)`,
/// skipping blank lines and lines whose first non-blank character is `#`.
/// Trailing comments are left to each file format (a password may contain `#`).
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Calls `reload` on every `SIGHUP` until the signal stream ends; `what` names the files
/// in the warning when the signal cannot be listened for. The handler is installed when
/// this is called, not when the returned future first runs: SIGHUP's default action ends
/// the process, so it must be in place before the proxy announces that it is listening
/// (a supervisor may reload right then). Call it inside the runtime.
pub fn on_sighup(
    what: &'static str,
    mut reload: impl FnMut() + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup());
    async move {
        let mut hangups = match hangups {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; {what} will not be reloaded");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            reload();
        }
    }
}

/// Something the proxy re-reads on `SIGHUP` (the access files, a TLS listener's
/// certificate, the PAC file, …): it reads its files again and swaps them in, or — on
/// any error — keeps what is in force; it logs the outcome either way.
pub trait Reload: Send + Sync {
    fn reload(&self);
}

/// Re-reads every one of `reloadables`, in order, on each `SIGHUP` ([`on_sighup`]: the
/// handler is in place once this returns).
pub fn reload_on_sighup(
    reloadables: Vec<Box<dyn Reload>>,
) -> impl Future<Output = ()> + Send + 'static {
    on_sighup("files", move || {
        for reloadable in &reloadables {
            reloadable.reload();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_problem_has_no_line_number() {
        let line = LineError {
            file: "users.txt".into(),
            line: 3,
            reason: "missing ':'".into(),
        };
        assert_eq!(line.to_string(), "users.txt:3: missing ':'");
        let whole = LineError::whole_file("users.txt", "cannot read users file: gone");
        assert_eq!(whole.to_string(), "users.txt: cannot read users file: gone");
        let both = FileErrors(vec![whole, line]);
        assert_eq!(
            both.to_string(),
            "users.txt: cannot read users file: gone\nusers.txt:3: missing ':'"
        );
    }
}
