//! Fixtures for the listener tests: a test CA and a proxy certificate signed by it (rcgen,
//! made at test time), raw SOCKS5 exchanges, PROXY-protocol headers written by hand, and
//! connections from a chosen loopback source address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Scratch, within};

/// A certificate for `localhost` and 127.0.0.1 signed by a CA made for the test, as PEM
/// files in a scratch folder: `ca.pem` for clients to trust, `proxy.pem` and `proxy.key`
/// for the proxy.
pub struct TestPki {
    pub files: Scratch,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let files = Scratch::new("pki");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "proxy-server test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_path = files.write("ca.pem", ca.pem());
        let (cert, key) = issue(&ca, &ca_key);
        let cert = files.write("proxy.pem", cert);
        let key = files.write("proxy.key", key);
        TestPki {
            files,
            ca: ca_path,
            cert,
            key,
        }
    }

    /// Flags that make the main listener speak TLS with this certificate.
    pub fn flags(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// A leaf certificate and key (PEM) for `localhost` and 127.0.0.1, signed by `ca`.
fn issue(ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A self-signed certificate and key for another name, for reload tests.
pub fn other_pair(name: &str) -> (String, String) {
    let pair = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
    (pair.cert.pem(), pair.key_pair.serialize_pem())
}

/// A TCP connection to `to` from the loopback address `from` (any of 127.0.0.0/8).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    within(socket.connect(to)).await.unwrap()
}

/// A PROXY v2 header (PROXY command, TCP over IPv4) naming `source` as the client.
pub fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 only");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(source.ip().octets());
    header.extend(destination.ip().octets());
    header.extend(source.port().to_be_bytes());
    header.extend(destination.port().to_be_bytes());
    header
}

/// SOCKS5 greeting offering `methods`; returns the method the proxy chose.
pub async fn socks_greet(stream: &mut TcpStream, methods: &[u8]) -> u8 {
    let mut greeting = vec![5, methods.len() as u8];
    greeting.extend(methods);
    within(stream.write_all(&greeting)).await.unwrap();
    let mut choice = [0u8; 2];
    within(stream.read_exact(&mut choice)).await.unwrap();
    assert_eq!(choice[0], 5);
    choice[1]
}

/// A SOCKS5 CONNECT to `host:port` by name (address type 3); returns the reply code.
pub async fn socks_connect_name(stream: &mut TcpStream, host: &str, port: u16) -> u8 {
    let mut request = vec![5, 1, 0, 3, host.len() as u8];
    request.extend(host.as_bytes());
    request.extend(port.to_be_bytes());
    socks_request(stream, &request).await
}

/// Sends a SOCKS5 request and reads the reply (IPv4 or IPv6 bound address); the code.
pub async fn socks_request(stream: &mut TcpStream, request: &[u8]) -> u8 {
    within(stream.write_all(request)).await.unwrap();
    let mut head = [0u8; 4];
    within(stream.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0], 5, "{head:?}");
    let rest = if head[3] == 4 { 18 } else { 6 };
    let mut bound = vec![0u8; rest];
    within(stream.read_exact(&mut bound)).await.unwrap();
    head[1]
}

/// The address the real binary announced for its listener labelled `label`
/// (`socks5 listener on ADDR`).
pub async fn announced(log: &super::Log, label: &str) -> SocketAddr {
    let needle = format!("{label} listener on ");
    log.wait_for(&needle, 1).await;
    let text = log.text();
    let line = text.lines().find(|l| l.contains(&needle)).unwrap();
    line.split(&needle).nth(1).unwrap().trim().parse().unwrap()
}
