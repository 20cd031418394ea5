//! TLS inspection's certificates: the operator's CA (`ca.rs`: `proxy-server new-ca`, and
//! loading `[inspection]`'s `ca_cert` and `ca_key` with their checks) and the leaf
//! certificates it signs for the names clients visit (`leaves.rs`: cached, bounded), plus
//! how origins are verified when the proxy opens its own TLS to them (`upstream`).
//! [`Inspection`] is what `config` builds from `[inspection]` and the access snapshot
//! carries; the front end that terminates an inspected tunnel asks it for a rustls
//! server configuration ([`Inspection::server_config`]) and a client one
//! ([`Inspection::upstream`]).
//!
//! No I/O on the request path (signing is CPU only), no knowledge of HTTP or of the
//! front ends. The CA key is never logged; no `Debug` here prints it.

mod ca;
mod leaves;

use std::sync::Arc;

use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ClientConfig, ServerConfig};

pub use ca::{
    Authority, CaProblem, DEFAULT_CA_DAYS, DEFAULT_CA_NAME, MAX_CA_DAYS, NewCa, run_new_ca,
};
pub use leaves::{DEFAULT_LEAF_CACHE, LEAF_LIFETIME, LeafError, LeafResolver, Leaves};

use crate::stats::Stats;

/// The ALPN protocol offered to inspected clients: HTTP/1.1 is what the proxy reads.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Inspection as `[inspection]` configures it: the CA's leaves and the trust the
/// proxy's own TLS to origins starts from.
pub struct Inspection {
    leaves: Arc<Leaves>,
    upstream: Arc<ClientConfig>,
    /// Versions, ALPN, resumption; each tunnel's copy gets its own certificate resolver.
    server: ServerConfig,
}

impl std::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspection")
            .field("ca", self.leaves.authority())
            .finish_non_exhaustive()
    }
}

/// Until a tunnel's own resolver is put in: no certificate, so no handshake.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

impl Inspection {
    /// `upstream`: the client configuration that verifies origins (the system's roots
    /// or `upstream_ca_file`, built by `config` with `tls::client_config`).
    pub fn new(authority: Authority, upstream: Arc<ClientConfig>) -> Result<Inspection, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("cannot set up TLS for inspection: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCertificate));
        server.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(Inspection {
            leaves: Arc::new(Leaves::new(Arc::new(authority), DEFAULT_LEAF_CACHE)),
            upstream,
            server,
        })
    }

    /// The leaves, for a leaf by name ([`Leaves::certified_key`]).
    pub fn leaves(&self) -> &Arc<Leaves> {
        &self.leaves
    }

    /// How to verify an origin: certificate chain to the roots, and the name.
    pub fn upstream(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.upstream)
    }

    /// The rustls server configuration for one inspected tunnel to `host` (the CONNECT
    /// host): the leaf for the client's SNI name, else for `host`; TLS 1.3 and 1.2;
    /// ALPN `http/1.1`. Costs a copy of a small configuration; the leaf comes from the
    /// cache after the first visit.
    pub fn server_config(&self, host: &str, stats: Arc<Stats>) -> Arc<ServerConfig> {
        let mut config = self.server.clone();
        config.cert_resolver = Arc::new(LeafResolver::new(Arc::clone(&self.leaves), host, stats));
        Arc::new(config)
    }
}
