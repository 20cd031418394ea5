//! Reading config files (rules, users): the lines that carry content, and the
//! `file:line: reason` errors a bad file is reported with (all of them, together).

use std::fmt;

/// One bad line of a config file, shown as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
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
