//! What a server is built from besides its settings: the access state, the TLS
//! listeners' certificates, the PAC file, the resolver, the cache, statistics and the
//! access log, loaded at start with every file error reported together.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::access::AccessControl;
use crate::cache::Cache;
use crate::config::Config;
use crate::files::{FileErrors, LineError};
use crate::limits::MAX_KEYS;
use crate::logging::AccessLog;
use crate::pac_file::PacFile;
use crate::stats::Stats;
use crate::tls::Certificates;
use crate::upstream::Resolver;

/// The long-lived state the server runs with, built at start: the access rules and the
/// TLS listeners' certificates and the PAC file (whose file errors `main` reports with
/// exit code 2, all together), the cache, the statistics and the access log.
pub struct Services {
    pub access: AccessControl,
    pub cache: Option<Cache>,
    pub stats: Arc<Stats>,
    /// `None` writes no access log (embedders and tests that do not need one).
    pub access_log: Option<AccessLog>,
    /// Each listener's certificates, in the order of `Config::listeners`; `None` for a
    /// listener without TLS.
    pub tls: Vec<Option<Certificates>>,
    /// The `--pac-file` contents (re-read on SIGHUP); `None`: generated per listener.
    pub pac: Option<PacFile>,
    /// The resolver and its cache (with `/etc/resolv.conf` or `--dns-server`, and the
    /// hosts file read).
    pub resolver: Resolver,
    /// The metrics listener's bound address, when there is one: the dialer refuses it
    /// as a destination like the proxy's own listeners (a loop).
    pub metrics_addr: Option<SocketAddr>,
    /// Keys of each kind the limiter holds ([`MAX_KEYS`]; blocked addresses in
    /// proportion). Only tests set it lower, to reach the bound with few clients.
    pub limiter_keys: usize,
}

impl Services {
    pub fn load(config: &Config) -> Result<Services, FileErrors> {
        let access = AccessControl::load(&config.access);
        let tls: Vec<_> = config
            .listeners
            .iter()
            .map(|listener| listener.tls.as_ref().map(Certificates::load).transpose())
            .collect();
        let pac = config.pac_file.as_deref().map(PacFile::load).transpose();
        let stats: Arc<Stats> = Arc::default();
        let resolver = Resolver::new(&config.resolver, Arc::clone(&stats));
        let mut errors = Vec::new();
        let access = access.map_err(|e| errors.extend(e.0)).ok();
        let tls: Vec<_> = tls
            .into_iter()
            .filter_map(|loaded| loaded.map_err(|e| errors.extend(e.0)).ok())
            .collect();
        let pac = pac.map_err(|e| errors.push(e)).ok();
        let resolver = resolver
            .map_err(|e| {
                let file = config.resolver.hosts_file.as_ref();
                errors.push(LineError {
                    file: file.map_or("resolver".into(), |f| f.display().to_string()),
                    line: 0,
                    reason: format!("cannot read hosts file: {e}"),
                })
            })
            .ok();
        match (access, pac, resolver) {
            (Some(access), Some(pac), Some(resolver)) if errors.is_empty() => Ok(Services {
                access,
                cache: config.cache.as_ref().map(Cache::with_settings),
                stats,
                access_log: None,
                tls,
                pac,
                resolver,
                metrics_addr: None,
                limiter_keys: MAX_KEYS,
            }),
            _ => Err(FileErrors(errors)),
        }
    }
}

impl Services {
    /// Counts into `stats` from now on (the binary makes its statistics after loading,
    /// for the logging pipeline): the connection path's and the resolver's figures.
    pub fn use_stats(&mut self, stats: Arc<Stats>) {
        self.resolver.use_stats(Arc::clone(&stats));
        self.stats = stats;
    }
}
