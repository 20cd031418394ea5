//! A log file that rotates by size, only ever between whole lines.
//!
//! Owns one path such as `logs/access.log` and its numbered predecessors `access.log.1`
//! (newest) … `access.log.N` (oldest). Every `write` call is treated as one or more complete
//! lines: rotation happens before a write that would carry the file past its limit, never in
//! the middle of one, so no line is split across files. It runs on the logging writer thread
//! only; connection tasks never touch it.
//!
//! Why not a crate: `file-rotate` and `rolling-file` were considered. `file-rotate` cuts at an
//! exact byte count (splitting lines) unless its "surpassed" mode is used, and brings a date
//! library for suffix schemes we do not need; `rolling-file` is unmaintained. The numbered
//! shift below is forty lines and is tested against exactly the guarantees we promise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Size at which buffered bytes are pushed to the file even while lines keep coming.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The size limit and how many rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A file is rotated before a write that would make it larger than this (a single line
    /// larger than the limit still gets a file of its own rather than being cut).
    pub max_bytes: u64,
    /// Rotated files kept (`.1` … `.keep`); 0 keeps none, the full file is simply removed.
    pub keep: u32,
}

/// An append-only file that rotates by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    policy: RotationPolicy,
    file: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; an existing file's size counts towards the
    /// limit so a restart does not let the file grow past it.
    pub fn open(path: impl Into<PathBuf>, policy: RotationPolicy) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            policy,
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            size,
        })
    }

    /// The path currently written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the `index`-th rotated file (`access.log.1` is the newest).
    pub fn rotated_path(path: &Path, index: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    /// Closes the current file, shifts `.1`…`.N-1` up by one (dropping the oldest), renames the
    /// current file to `.1` and starts a fresh one.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let keep = self.policy.keep;
        if keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&Self::rotated_path(&self.path, keep))?;
            for index in (1..keep).rev() {
                let from = Self::rotated_path(&self.path, index);
                rename_if_present(&from, &Self::rotated_path(&self.path, index + 1))?;
            }
            // An operator may have moved or deleted the live file; that must not wedge logging.
            rename_if_present(&self.path, &Self::rotated_path(&self.path, 1))?;
        }
        self.file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` (whole lines) into one file, rotating first if it would not fit.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = buf.len() as u64;
        if self.size > 0 && self.size.saturating_add(incoming) > self.policy.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size = self.size.saturating_add(incoming);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("proxy-rotate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn read_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn rotation_keeps_n_files_and_never_splits_a_line() {
        let dir = temp_dir("keep");
        let path = dir.join("access.log");
        let policy = RotationPolicy {
            max_bytes: 1000,
            keep: 3,
        };
        let mut file = RotatingFile::open(&path, policy).expect("open");
        // 100 lines of 50 bytes: exactly 20 fit a 1000-byte file, so five files' worth are
        // written; keep=3 leaves the current file and .1-.3, the oldest 20 lines deleted.
        let total = 100u32;
        for n in 0..total {
            writeln!(file, "line {n:05} {}", "x".repeat(38)).expect("write");
        }
        file.flush().expect("flush");

        let rotated: Vec<PathBuf> = (1..=4)
            .map(|i| RotatingFile::rotated_path(&path, i))
            .collect();
        assert!(
            rotated[..3].iter().all(|p| p.exists()),
            "three rotated files kept"
        );
        assert!(!rotated[3].exists(), "the fourth is deleted");

        let mut seen = BTreeSet::new();
        for file_path in std::iter::once(&path).chain(rotated[..3].iter()) {
            let size = fs::metadata(file_path).expect("metadata").len();
            assert!(
                size <= policy.max_bytes,
                "{} has {size} bytes",
                file_path.display()
            );
            for line in read_lines(file_path) {
                assert_eq!(line.len(), 49, "whole line: {line:?}");
                let n: u32 = line[5..10].parse().expect("line number");
                assert!(seen.insert(n), "line {n} appears twice");
            }
        }
        // The kept files hold a contiguous tail of the lines: 100 lines, 20 per file, 4 files.
        let expected: BTreeSet<u32> = (total - 80..total).collect();
        assert_eq!(seen, expected);

        // Older files hold older lines: .3 < .2 < .1 < current.
        let first_of = |p: &Path| read_lines(p)[0][5..10].parse::<u32>().expect("number");
        let order: Vec<u32> = [&rotated[2], &rotated[1], &rotated[0], &path]
            .iter()
            .map(|p| first_of(p))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn reopening_counts_the_existing_size_and_a_huge_line_gets_its_own_file() {
        let dir = temp_dir("reopen");
        let path = dir.join("proxy.log");
        let policy = RotationPolicy {
            max_bytes: 100,
            keep: 2,
        };
        fs::write(&path, format!("{}\n", "a".repeat(89))).expect("seed");
        let mut file = RotatingFile::open(&path, policy).expect("open");
        file.write_all(format!("{}\n", "b".repeat(19)).as_bytes())
            .expect("write");
        file.write_all(format!("{}\n", "c".repeat(299)).as_bytes())
            .expect("write");
        file.flush().expect("flush");
        assert_eq!(
            read_lines(&RotatingFile::rotated_path(&path, 2)),
            vec!["a".repeat(89)]
        );
        assert_eq!(
            read_lines(&RotatingFile::rotated_path(&path, 1)),
            vec!["b".repeat(19)]
        );
        assert_eq!(read_lines(&path), vec!["c".repeat(299)]);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_live_file_deleted_by_an_operator_does_not_stop_rotation() {
        let dir = temp_dir("deleted");
        let path = dir.join("access.log");
        let policy = RotationPolicy {
            max_bytes: 20,
            keep: 2,
        };
        let mut file = RotatingFile::open(&path, policy).expect("open");
        file.write_all(b"first line.\n").expect("write");
        file.flush().expect("flush");
        fs::remove_file(&path).expect("operator deletes the file");
        file.write_all(b"second line\n")
            .expect("rotation tolerates the missing file");
        file.write_all(b"third line.\n").expect("write");
        file.flush().expect("flush");
        assert_eq!(read_lines(&path), vec!["third line."]);
        assert_eq!(
            read_lines(&RotatingFile::rotated_path(&path, 1)),
            vec!["second line"]
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn keep_zero_discards_the_full_file() {
        let dir = temp_dir("zero");
        let path = dir.join("access.log");
        let mut file = RotatingFile::open(
            &path,
            RotationPolicy {
                max_bytes: 10,
                keep: 0,
            },
        )
        .expect("open");
        file.write_all(b"first...\n").expect("write");
        file.write_all(b"second..\n").expect("write");
        file.flush().expect("flush");
        assert_eq!(read_lines(&path), vec!["second.."]);
        assert!(!RotatingFile::rotated_path(&path, 1).exists());
        fs::remove_dir_all(&dir).ok();
    }
}
