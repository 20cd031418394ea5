//! `[inspection]`: the CA that signs leaf certificates for inspected tunnels (`ca_cert`,
//! `ca_key`, paths relative to the file) and the roots the proxy verifies origins
//! against when it opens its own TLS to them (`upstream_ca_file`; else the system's).
//! The pair is loaded and checked here (`inspect::Authority::load`), so `--check-config`
//! and a `SIGHUP` report an unreadable, mismatched or unsafe pair at the line that
//! names it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use super::relative_to;
use super::values::{Problems, Value};
use crate::inspect::{Authority, CaProblem, Inspection};

const INSPECTION_KEYS: [&str; 3] = ["ca_cert", "ca_key", "upstream_ca_file"];

/// The `[inspection]` table, loaded; `None` without one or when it has problems (noted).
pub fn read(
    root: &DeTable<'_>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<Arc<Inspection>> {
    let value = root.get("inspection")?;
    let table = problems.table("inspection", value)?;
    problems.unknown_keys(table, &INSPECTION_KEYS, "in [inspection]");
    let mut path = |key: &str| -> Option<(PathBuf, &Value<'_>)> {
        let Some(value) = table.get(key) else {
            if key != "upstream_ca_file" {
                problems.at(&value.span(), format!("[inspection] needs `{key}`"));
            }
            return None;
        };
        let text = problems.string(key, value)?;
        Some((relative_to(folder, text), value))
    };
    let cert = path("ca_cert");
    let key = path("ca_key");
    let upstream = path("upstream_ca_file");
    let ((cert, cert_value), (key, key_value)) = (cert?, key?);
    let upstream_config = crate::tls::client_config(upstream.as_ref().map(|(p, _)| p.as_path()));
    let upstream_config = match upstream_config {
        Ok(config) => Some(config),
        Err(reason) => {
            let span = upstream.map_or(value.span(), |(_, value)| value.span());
            problems.at(&span, format!("origins cannot be verified: {reason}"));
            None
        }
    };
    let authority = match Authority::load(&cert, &key) {
        Ok(authority) => Some(authority),
        Err(found) => {
            for problem in found {
                match problem {
                    CaProblem::Cert(reason) => problems.at(&cert_value.span(), reason),
                    CaProblem::Key(reason) => problems.at(&key_value.span(), reason),
                }
            }
            None
        }
    };
    match Inspection::new(authority?, upstream_config?) {
        Ok(inspection) => Some(Arc::new(inspection)),
        Err(reason) => {
            problems.at(&value.span(), reason);
            None
        }
    }
}
