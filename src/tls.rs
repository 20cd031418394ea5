//! TLS to the proxy (an HTTPS proxy): loading a listener's certificate chain and key,
//! re-reading them on SIGHUP (a pair that fails to load leaves the previous one in force,
//! and says why in the log), and the handshake with a client. rustls through
//! tokio-rustls with the ring provider; TLS 1.3 and 1.2, ALPN `http/1.1` (the proxy
//! speaks HTTP/1.1 only). Knows nothing of HTTP or of the front ends: the server runs
//! the handshake under the header timeout and hands the session on as a
//! `ClientStream`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::files::{FileErrors, LineError, Reload, WHOLE_FILE};

/// The certificate chain and key a TLS listener presents (PEM files, re-read on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The ALPN protocol offered (RFC 7301): HTTP/1.1 is all this proxy speaks.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// A TLS listener's current certificate and key; a cheap handle, cloned into the accept
/// loop and the SIGHUP task.
#[derive(Clone)]
pub struct Certificates {
    inner: Arc<Inner>,
}

struct Inner {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.inner.files.cert)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads the certificate chain and key that `files` name.
    pub fn load(files: &TlsFiles) -> Result<Certificates, FileErrors> {
        let config = server_config(files)?;
        Ok(Certificates {
            inner: Arc::new(Inner {
                files: files.clone(),
                current: ArcSwap::from_pointee(config),
            }),
        })
    }

    /// An acceptor with the pair in force now; a handshake keeps the pair it started with.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.current.load_full())
    }

    /// Re-reads both files; on any error nothing changes and the errors are returned.
    pub fn reload(&self) -> Result<(), FileErrors> {
        let config = server_config(&self.inner.files)?;
        self.inner.current.store(Arc::new(config));
        Ok(())
    }

    /// [`Certificates::reload`], logging the outcome.
    pub fn reload_and_log(&self) -> bool {
        let cert = self.inner.files.cert.display();
        match self.reload() {
            Ok(()) => {
                tracing::info!(%cert, "TLS certificate reloaded");
                true
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(%error, "TLS reload failed; keeping the previous certificate");
                }
                false
            }
        }
    }
}

/// Runs the server side of a handshake; the caller bounds it in time.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    acceptor.accept(stream).await
}

/// Whether the first byte a client sent can open a TLS handshake: a TLS record of type
/// handshake (RFC 8446 §5.1, content type 22). A plain HTTP request starts with a letter.
pub fn looks_like_tls(first: u8) -> bool {
    first == 0x16
}

impl Reload for Certificates {
    fn reload(&self) {
        self.reload_and_log();
    }
}

/// The rustls configuration for one certificate chain and key.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, FileErrors> {
    let chain = read_chain(&files.cert);
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error(&files.key, format!("cannot read a PEM private key: {e}")));
    let (chain, key) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (chain, key) => {
            let errors = chain.err().into_iter().chain(key.err()).collect();
            return Err(FileErrors(errors));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| {
            let reason = format!("certificate and key do not make a usable pair: {e}");
            FileErrors(vec![file_error(&files.cert, reason)])
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(config)
}

/// The client side, for connections to an `https://` parent proxy: its certificate is
/// checked against the certificates of `ca_file` when given, else against the system's
/// roots (`rustls-native-certs`: `/etc/ssl/certs` and `SSL_CERT_FILE`, where a company
/// installs its own CA). The reason, when no usable certificate is found.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_chain(path).map_err(|e| e.reason)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no system root certificates found; give the parent a ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, the server's first; at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, LineError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, format!("cannot read PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file".into()));
    }
    Ok(chain)
}

fn file_error(path: &Path, reason: String) -> LineError {
    LineError {
        file: path.display().to_string(),
        line: WHOLE_FILE,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let pair = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, pair.cert.pem()).unwrap();
        std::fs::write(&files.key, pair.key_pair.serialize_pem()).unwrap();
        files
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_pair_loads_and_offers_http_1_1() {
        let files = write_pair(&scratch("load"), "localhost");
        let certificates = Certificates::load(&files).unwrap();
        let config = certificates.inner.current.load();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_files_are_reported_and_a_failed_reload_keeps_the_old_pair() {
        let dir = scratch("reload");
        let files = write_pair(&dir, "localhost");
        let certificates = Certificates::load(&files).unwrap();
        let before = certificates.inner.current.load_full();
        std::fs::write(&files.key, "not a key").unwrap();
        let errors = certificates.reload().unwrap_err();
        assert!(errors.to_string().contains("private key"), "{errors}");
        assert!(Arc::ptr_eq(
            &before,
            &certificates.inner.current.load_full()
        ));
        // A key that does not belong to the certificate is refused as a pair.
        let other = write_pair(&dir, "other");
        std::fs::copy(&other.key, &files.key).unwrap();
        let errors = certificates.reload().unwrap_err();
        assert!(errors.to_string().contains("usable pair"), "{errors}");
        let missing = TlsFiles {
            cert: dir.join("missing.pem"),
            key: dir.join("missing.key"),
        };
        let errors = Certificates::load(&missing).unwrap_err();
        assert_eq!(errors.0.len(), 2, "both files are reported: {errors}");
    }

    #[test]
    fn plain_http_is_not_a_handshake() {
        assert!(looks_like_tls(0x16));
        assert!(!looks_like_tls(b'G') && !looks_like_tls(b'C'));
    }
}
