//! The `--pac-file` contents HTTP listeners answer `/proxy.pac` and `/wpad.dat` with:
//! read at start (a file that cannot be read stops the start with the others' errors)
//! and again on each SIGHUP, where a file that cannot be read leaves the previous
//! contents in force and says so in the log, as the TLS certificates do. Knows nothing
//! of HTTP: `http_proxy::pac` serves what [`PacFile::current`] holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::files::{LineError, Reload, WHOLE_FILE};

/// The PAC file's path and its contents now; a cheap handle shared by the context and
/// the SIGHUP task.
#[derive(Clone)]
pub struct PacFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    current: ArcSwap<Bytes>,
}

impl std::fmt::Debug for PacFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacFile")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl PacFile {
    pub fn load(path: &Path) -> Result<PacFile, LineError> {
        Ok(PacFile {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                current: ArcSwap::from_pointee(read(path)?),
            }),
        })
    }

    /// The contents in force.
    pub fn current(&self) -> Bytes {
        Bytes::clone(&self.inner.current.load())
    }

    /// Reads the file again; when it cannot be read, the previous contents stay and the
    /// error is logged. Whether it was replaced.
    pub fn reload_and_log(&self) -> bool {
        let path = self.inner.path.display();
        match read(&self.inner.path) {
            Ok(contents) => {
                self.inner.current.store(Arc::new(contents));
                tracing::info!(%path, "PAC file reloaded");
                true
            }
            Err(error) => {
                tracing::error!(%error, "PAC file reload failed; keeping the previous one");
                false
            }
        }
    }
}

fn read(path: &Path) -> Result<Bytes, LineError> {
    std::fs::read(path).map(Bytes::from).map_err(|e| LineError {
        file: path.display().to_string(),
        line: WHOLE_FILE,
        reason: format!("cannot read PAC file: {e}"),
    })
}

impl Reload for PacFile {
    fn reload(&self) {
        self.reload_and_log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_replaces_the_contents_and_a_missing_file_keeps_them() {
        let dir = std::env::temp_dir().join(format!("pac-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.pac");
        std::fs::write(&path, "one").unwrap();
        let pac = PacFile::load(&path).unwrap();
        assert_eq!(pac.current(), "one");
        std::fs::write(&path, "two").unwrap();
        assert!(pac.reload_and_log());
        assert_eq!(pac.current(), "two");
        std::fs::remove_file(&path).unwrap();
        assert!(!pac.reload_and_log());
        assert_eq!(pac.current(), "two");
        let error = PacFile::load(&path).unwrap_err();
        assert!(error.reason.contains("cannot read PAC file"), "{error}");
    }
}
