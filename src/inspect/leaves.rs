//! Leaf certificates for inspected connections: one per name (a DNS name, or an IP
//! address as an IP SAN), ECDSA P-256 with a key of its own, `CA:FALSE`, serverAuth,
//! valid from a little before now for at most [`LEAF_LIFETIME`] and never past the CA.
//!
//! Signing costs a key generation and a signature (figures in docs/inspection.md), so
//! leaves are kept in a bounded LRU keyed by the name, each entry dropped
//! [`RENEW_BEFORE`] before its leaf expires: a repeat visit costs a lock and a hash
//! lookup. The lock is never held while signing; two first visits to one name at the
//! same moment both sign, and the second's leaf is kept — cheaper than making one wait.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use lru::LruCache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::Authority;
use crate::stats::Stats;

/// Longest a leaf is valid: short, since the proxy makes new ones for free, and far
/// under the 398 days browsers accept.
pub const LEAF_LIFETIME: Duration = Duration::days(30);
/// A leaf is valid from this long before it was made, for clients whose clocks are behind.
const BACKDATE: Duration = Duration::hours(1);
/// A cached leaf is replaced this long before it expires, so none is served near its end.
const RENEW_BEFORE: Duration = Duration::days(1);
/// Leaves kept by default: a few hundred bytes of DER and a key each.
pub const DEFAULT_LEAF_CACHE: usize = 1024;
/// The longest DNS name (RFC 1035 §2.3.4, as text without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// The longest common name X.520 allows (ub-common-name); longer names go only in the SAN.
const MAX_COMMON_NAME_LEN: usize = 64;

/// Why no leaf could be made for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafError {
    /// Not a DNS name or an IP address.
    BadName(String),
    /// The CA is no longer valid.
    CaExpired,
    /// rcgen or rustls failed.
    Signing(String),
}

impl std::fmt::Display for LeafError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeafError::BadName(name) => write!(f, "{name:?} is not a host name or address"),
            LeafError::CaExpired => f.write_str("the inspection CA has expired"),
            LeafError::Signing(reason) => write!(f, "cannot sign a leaf certificate: {reason}"),
        }
    }
}

impl std::error::Error for LeafError {}

/// The leaves one CA has signed, by name.
pub struct Leaves {
    authority: Arc<Authority>,
    /// Never held across signing.
    cache: Mutex<LruCache<Box<str>, Entry>>,
}

struct Entry {
    leaf: Arc<CertifiedKey>,
    /// When to stop serving it: [`RENEW_BEFORE`] before it expires.
    fresh_until: OffsetDateTime,
}

impl std::fmt::Debug for Leaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaves")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Leaves {
    /// At most `capacity` leaves are kept (at least one).
    pub fn new(authority: Arc<Authority>, capacity: usize) -> Leaves {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Leaves {
            authority,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// The leaf (and the CA after it) for `name` — the SNI name, or the CONNECT host:
    /// a DNS name, or an IP address (`[v6]` too) — from the cache or newly signed.
    pub fn certified_key(&self, name: &str, stats: &Stats) -> Result<Arc<CertifiedKey>, LeafError> {
        self.certified_key_at(name, OffsetDateTime::now_utc(), stats)
    }

    /// How many leaves are kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn certified_key_at(
        &self,
        name: &str,
        now: OffsetDateTime,
        stats: &Stats,
    ) -> Result<Arc<CertifiedKey>, LeafError> {
        let subject = Subject::parse(name)?;
        let key = subject.key();
        if let Some(entry) = self.lock().get(key.as_str())
            && entry.fresh_until > now
        {
            stats.inspection().leaf_cached();
            return Ok(Arc::clone(&entry.leaf));
        }
        let started = Instant::now();
        let (leaf, not_after) = self.sign(&subject, now)?;
        stats.inspection().leaf_generated(started.elapsed());
        // A leaf cut short by the CA's own end is kept for the first half of its life.
        let margin = RENEW_BEFORE.min((not_after - now) / 2);
        let fresh_until = not_after - margin;
        self.lock().put(
            key.into_boxed_str(),
            Entry {
                leaf: Arc::clone(&leaf),
                fresh_until,
            },
        );
        Ok(leaf)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Entry>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new leaf for `subject`, and when it expires.
    fn sign(
        &self,
        subject: &Subject,
        now: OffsetDateTime,
    ) -> Result<(Arc<CertifiedKey>, OffsetDateTime), LeafError> {
        let ca = &self.authority;
        let not_after = (now + LEAF_LIFETIME).min(ca.not_after());
        if not_after <= now {
            return Err(LeafError::CaExpired);
        }
        let signing = |e: rcgen::Error| LeafError::Signing(e.to_string());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![subject.san()?];
        let mut dn = DistinguishedName::new();
        if let Subject::Name(name) = subject
            && name.len() <= MAX_COMMON_NAME_LEN
        {
            dn.push(DnType::CommonName, name.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).max(ca.not_before());
        params.not_after = not_after;
        params.serial_number = Some(random_serial().into());
        let cert = ca.sign(params, &key).map_err(signing)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&der)
            .map_err(|e| LeafError::Signing(e.to_string()))?;
        let chain = vec![cert.der().clone(), ca.cert().clone()];
        Ok((Arc::new(CertifiedKey::new(chain, signer)), not_after))
    }
}

/// What a leaf is for.
enum Subject {
    /// Lower case, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl Subject {
    fn parse(name: &str) -> Result<Subject, LeafError> {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Subject::Ip(ip));
        }
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.len() > MAX_NAME_LEN || !name.split('.').all(label_ok) {
            return Err(LeafError::BadName(name));
        }
        Ok(Subject::Name(name))
    }

    fn key(&self) -> String {
        match self {
            Subject::Name(name) => name.clone(),
            Subject::Ip(ip) => ip.to_string(),
        }
    }

    fn san(&self) -> Result<SanType, LeafError> {
        match self {
            Subject::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            Subject::Name(name) => name
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| LeafError::BadName(name.clone())),
        }
    }
}

/// A positive 128-bit serial number (RFC 5280 §4.1.2.2: unique per CA, at most 20
/// octets); random, as the CA/Browser Forum asks, so no two leaves share one.
pub(super) fn random_serial() -> Vec<u8> {
    let mut serial = [0u8; 16];
    let random = rustls::crypto::ring::default_provider().secure_random;
    if random.fill(&mut serial).is_err() {
        // ring's system random source does not fail on Linux; a clock-based serial is
        // unique enough for a leaf if it ever did.
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        serial.copy_from_slice(&nanos.to_be_bytes());
    }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial.to_vec()
}

/// What a TLS server session asks for its certificate: the leaf for the ClientHello's
/// SNI name, or for the CONNECT host when the client sent none (an IP address, say).
#[derive(Debug)]
pub struct LeafResolver {
    leaves: Arc<Leaves>,
    host: Box<str>,
    stats: Arc<Stats>,
}

impl LeafResolver {
    pub fn new(leaves: Arc<Leaves>, host: &str, stats: Arc<Stats>) -> LeafResolver {
        LeafResolver {
            leaves,
            host: host.into(),
            stats,
        }
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().unwrap_or(&self.host);
        match self.leaves.certified_key(name, &self.stats) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::warn!(%error, name, "no leaf certificate; the handshake fails");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
