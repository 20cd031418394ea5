//! A local TLS origin for CONNECT tests: a self-signed certificate for `localhost`
//! (rcgen) and a tokio-rustls server that answers every request with one fixed body.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The certificate in PEM form, for clients to trust.
    pub cert_pem: String,
}

impl TlsOrigin {
    /// Serves `body` over HTTPS (HTTP/1.1 with keep-alive) on 127.0.0.1.
    pub async fn start(body: Arc<Vec<u8>>) -> TlsOrigin {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_pem = cert.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut pending = Vec::new();
                    loop {
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if tls.write_all(head.as_bytes()).await.is_err()
                                || tls.write_all(&body).await.is_err()
                            {
                                return;
                            }
                        }
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        TlsOrigin { addr, cert_pem }
    }
}
