//! The inspection CA: creating one (`proxy-server new-ca`) and loading the operator's
//! (`[inspection]` `ca_cert`, `ca_key`). Loading checks what would otherwise fail later
//! and quietly — the key file's mode, that the certificate is a CA allowed to sign
//! certificates, that it is valid now, and that the key is the certificate's — and says
//! which of the two files is at fault, so the configuration can point at its line.
//!
//! The key is held only here and in rcgen's `KeyPair`; neither this type's `Debug` nor
//! any message prints it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// The subject name `new-ca` gives a CA when `--name` is not given.
pub const DEFAULT_CA_NAME: &str = "proxy-server inspection CA";
/// How long a new CA is valid when `--days` is not given.
pub const DEFAULT_CA_DAYS: u32 = 365;
/// Longest `--days`: ten years. A CA that every client trusts should be renewed, not
/// kept forever.
pub const MAX_CA_DAYS: u32 = 3650;
/// A new CA is valid from this long before it was made, for clients whose clocks are
/// behind.
const BACKDATE: Duration = Duration::hours(1);
/// Mode bits a CA key file must not have: any access by group or others (as ssh asks
/// of private keys).
const UNSAFE_KEY_MODE: u32 = 0o077;

/// What `proxy-server new-ca` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's subject common name.
    pub name: String,
    /// Days of validity, from 1 to [`MAX_CA_DAYS`].
    pub days: u32,
}

/// Which file of a CA pair is at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaProblem {
    Cert(String),
    Key(String),
}

/// A loaded CA: the certificate as the operator made it (sent after each leaf), and
/// what rcgen signs leaves with.
pub struct Authority {
    cert: CertificateDer<'static>,
    /// The CA rebuilt from its own parameters (subject, key identifier): rcgen 0.13
    /// signs with an issuer certificate object. Leaves name the subject and key
    /// identifier of the operator's certificate, so they chain to it, not to this copy.
    issuer: rcgen::Certificate,
    key: KeyPair,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Reads and checks a CA certificate (PEM, the first certificate in the file) and
    /// its private key (PKCS#8 PEM); every problem is reported, each against its file.
    pub fn load(cert: &Path, key: &Path) -> Result<Authority, Vec<CaProblem>> {
        let key_pair = read_key(key);
        let cert_der = read_cert(cert);
        let (key_pair, cert_der) = match (key_pair, cert_der) {
            (Ok(key_pair), Ok(cert_der)) => (key_pair, cert_der),
            (key_pair, cert_der) => {
                return Err(key_pair.err().into_iter().chain(cert_der.err()).collect());
            }
        };
        Authority::from_parts(cert_der, key_pair, OffsetDateTime::now_utc())
    }

    /// A CA from its certificate and key, checked as of `now`.
    pub(super) fn from_parts(
        cert: CertificateDer<'static>,
        key: KeyPair,
        now: OffsetDateTime,
    ) -> Result<Authority, Vec<CaProblem>> {
        let bad = |reason: String| vec![CaProblem::Cert(reason)];
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| bad(format!("not a readable X.509 certificate: {e}")))?;
        let is_ca = parsed
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|ext| ext.value.ca);
        if !is_ca {
            return Err(bad(
                "not a CA certificate (basicConstraints CA:TRUE is missing); make one with \
                 `proxy-server new-ca`"
                    .into(),
            ));
        }
        if let Ok(Some(usage)) = parsed.key_usage()
            && !usage.value.key_cert_sign()
        {
            return Err(bad("its key usage does not allow signing certificates \
                            (keyCertSign)"
                .into()));
        }
        let validity = parsed.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        if now < not_before || now >= not_after {
            return Err(bad(format!(
                "not valid now (valid from {not_before} to {not_after})"
            )));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(vec![CaProblem::Key(
                "this key does not belong to the CA certificate (ca_cert)".into(),
            )]);
        }
        let subject = parsed.subject().to_string();
        let params = CertificateParams::from_ca_cert_der(&cert)
            .map_err(|e| bad(format!("cannot sign with this certificate: {e}")))?;
        let issuer = params
            .self_signed(&key)
            .map_err(|e| bad(format!("cannot sign with this certificate and key: {e}")))?;
        Ok(Authority {
            cert,
            issuer,
            key,
            not_before,
            not_after,
            subject,
        })
    }

    /// The CA certificate as read (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The CA's subject, as `CN=…, O=…`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Signs `params` for `public_key` (a leaf).
    pub(super) fn sign(
        &self,
        params: CertificateParams,
        public_key: &KeyPair,
    ) -> Result<rcgen::Certificate, rcgen::Error> {
        params.signed_by(public_key, &self.issuer, &self.key)
    }
}

fn read_key(path: &Path) -> Result<KeyPair, CaProblem> {
    let bad = |reason: String| CaProblem::Key(format!("{}: {reason}", path.display()));
    let metadata = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & UNSAFE_KEY_MODE != 0 {
        return Err(bad(format!(
            "the CA key is open to group or others (mode {mode:04o}); `chmod 600` it"
        )));
    }
    let pem = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    KeyPair::from_pem(&pem).map_err(|e| {
        bad(format!(
            "not a usable PKCS#8 PEM private key ({e}); convert with \
             `openssl pkcs8 -topk8 -nocrypt`"
        ))
    })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, CaProblem> {
    let bad = |reason: String| CaProblem::Cert(format!("{}: {reason}", path.display()));
    let mut certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read PEM certificates: {e}")))?;
    match certs.next() {
        Some(Ok(cert)) => Ok(cert),
        Some(Err(e)) => Err(bad(format!("cannot read PEM certificates: {e}"))),
        None => Err(bad("no PEM certificate in the file".into())),
    }
}

impl NewCa {
    /// Makes the CA and writes both files. Neither may exist yet; both are created
    /// before anything is written, the key with mode 0600 from the start, so a refusal
    /// leaves nothing behind and the key is never readable by others.
    pub fn write(&self) -> Result<(), String> {
        let (cert_pem, key_pem) = self.generate(OffsetDateTime::now_utc())?;
        let open = |path: &Path, mode: u32| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => format!(
                        "{} already exists; not overwriting it (remove it or choose another \
                         name)",
                        path.display()
                    ),
                    _ => format!("cannot create {}: {e}", path.display()),
                })
        };
        for path in [&self.cert, &self.key] {
            if path.exists() {
                return Err(format!(
                    "{} already exists; not overwriting it (remove it or choose another name)",
                    path.display()
                ));
            }
        }
        let mut key_file = open(&self.key, 0o600)?;
        let mut cert_file = match open(&self.cert, 0o644) {
            Ok(file) => file,
            Err(reason) => {
                // Ours, and still empty.
                let _ = std::fs::remove_file(&self.key);
                return Err(reason);
            }
        };
        let written = key_file
            .write_all(key_pem.as_bytes())
            .and_then(|()| key_file.sync_all())
            .and_then(|()| cert_file.write_all(cert_pem.as_bytes()))
            .and_then(|()| cert_file.sync_all());
        written.map_err(|e| format!("cannot write the CA files: {e}"))
    }

    /// The CA certificate and key, PEM, valid from a little before `now` for `days`.
    fn generate(&self, now: OffsetDateTime) -> Result<(String, String), String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate a key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, self.name.as_str());
        params.distinguished_name = name;
        // Path length 0: it signs leaves, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(i64::from(self.days));
        params.serial_number = Some(super::leaves::random_serial().into());
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// `proxy-server new-ca`: writes the pair and says where; exit 2 on any refusal.
pub fn run_new_ca(request: &NewCa) -> ExitCode {
    match request.write() {
        Ok(()) => {
            println!(
                "wrote the CA certificate to {} and its key to {} (mode 0600); \
                 docs/inspection.md says how to give the certificate to clients",
                request.cert.display(),
                request.key.display()
            );
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("proxy-server new-ca: {reason}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("inspect-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn request(dir: &Path) -> NewCa {
        NewCa {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            name: DEFAULT_CA_NAME.into(),
            days: 30,
        }
    }

    #[test]
    fn a_new_ca_loads_and_its_key_is_private() {
        let dir = scratch("new");
        let request = request(&dir);
        request.write().unwrap();
        let mode = std::fs::metadata(&request.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = Authority::load(&request.cert, &request.key).unwrap();
        assert_eq!(ca.subject(), format!("CN={DEFAULT_CA_NAME}"));
        let days = (ca.not_after() - OffsetDateTime::now_utc()).whole_days();
        assert!((29..=30).contains(&days), "{days}");
        let debug = format!("{ca:?}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("key"),
            "{debug}"
        );
    }

    #[test]
    fn new_ca_refuses_to_overwrite_either_file() {
        let dir = scratch("overwrite");
        let request = request(&dir);
        std::fs::write(&request.key, "keep me").unwrap();
        let error = request.write().unwrap_err();
        assert!(error.contains("already exists"), "{error}");
        assert!(!request.cert.exists(), "nothing written");
        assert_eq!(std::fs::read_to_string(&request.key).unwrap(), "keep me");
        std::fs::remove_file(&request.key).unwrap();
        std::fs::write(&request.cert, "keep me").unwrap();
        assert!(request.write().is_err());
        assert!(!request.key.exists(), "nothing written");
    }

    #[test]
    fn an_open_key_a_foreign_key_and_a_leaf_are_refused() {
        let dir = scratch("refused");
        let request = request(&dir);
        request.write().unwrap();
        std::fs::set_permissions(&request.key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let problems = Authority::load(&request.cert, &request.key).unwrap_err();
        assert!(
            matches!(&problems[..], [CaProblem::Key(reason)] if reason.contains("0640")),
            "{problems:?}"
        );
        std::fs::set_permissions(&request.key, std::fs::Permissions::from_mode(0o600)).unwrap();

        let other = NewCa {
            cert: dir.join("other.pem"),
            key: dir.join("other.key"),
            ..request.clone()
        };
        other.write().unwrap();
        let problems = Authority::load(&request.cert, &other.key).unwrap_err();
        assert!(
            matches!(&problems[..], [CaProblem::Key(reason)] if reason.contains("does not belong")),
            "{problems:?}"
        );

        let leaf = rcgen::generate_simple_self_signed(vec!["leaf.test".into()]).unwrap();
        let leaf_cert = dir.join("leaf.pem");
        let leaf_key = dir.join("leaf.key");
        std::fs::write(&leaf_cert, leaf.cert.pem()).unwrap();
        std::fs::write(&leaf_key, leaf.key_pair.serialize_pem()).unwrap();
        std::fs::set_permissions(&leaf_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let problems = Authority::load(&leaf_cert, &leaf_key).unwrap_err();
        assert!(
            matches!(&problems[..], [CaProblem::Cert(reason)] if reason.contains("not a CA")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_expired_ca_is_refused() {
        let request = request(Path::new("/nonexistent"));
        let (cert, key) = request.generate(OffsetDateTime::now_utc()).unwrap();
        let cert = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let key = KeyPair::from_pem(&key).unwrap();
        let later = OffsetDateTime::now_utc() + Duration::days(31);
        let problems = Authority::from_parts(cert, key, later).unwrap_err();
        assert!(
            matches!(&problems[..], [CaProblem::Cert(reason)] if reason.contains("not valid now")),
            "{problems:?}"
        );
    }
}
