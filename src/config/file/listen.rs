//! `[[listen]]` tables: each one a listener beside the command line's main listener —
//! `addr`, `protocol` (`"http"`, the default, or `"socks5"`), `tls_cert` and `tls_key`
//! (paths relative to the file), `proxy_protocol_from` (networks). Every problem at its
//! line; the rules every listener obeys are [`Listener::check`]'s, so flags and file
//! cannot drift apart. Whether an address is also taken by the command line's listeners
//! is the merge's to say (`cli::merge`), which knows them.

use std::net::SocketAddr;
use std::path::Path;

use toml::de::DeTable;

use super::relative_to;
use super::values::{Problems, Value};
use crate::acl::parse_client_net;
use crate::config::{Listener, Protocol, TlsFiles};

const LISTEN_KEYS: [&str; 5] = [
    "addr",
    "protocol",
    "tls_cert",
    "tls_key",
    "proxy_protocol_from",
];

/// A listener the file asks for, and the line its table starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListener {
    pub listener: Listener,
    pub line: usize,
}

/// Every `[[listen]]` table of the file, in order; problems noted in `problems`.
pub fn read(root: &DeTable<'_>, folder: &Path, problems: &mut Problems<'_>) -> Vec<FileListener> {
    let Some(value) = root.get("listen") else {
        return Vec::new();
    };
    let Some(entries) = value.get_ref().as_array() else {
        problems.at(
            &value.span(),
            "`listen` must be an array of tables ([[listen]])",
        );
        return Vec::new();
    };
    let mut listeners: Vec<FileListener> = Vec::with_capacity(entries.len());
    for entry in entries {
        let Some(table) = problems.table("listen", entry) else {
            continue;
        };
        let Some(listener) = read_listener(table, entry, folder, problems) else {
            continue;
        };
        let line = problems.line(&entry.span());
        let repeated = listeners
            .iter()
            .find(|other| other.listener.addr == listener.addr && listener.addr.port() != 0);
        if let Some(other) = repeated {
            let reason = format!(
                "{}: two listeners on one address (the other at line {})",
                listener.addr, other.line
            );
            problems.at(&entry.span(), reason);
            continue;
        }
        listeners.push(FileListener { listener, line });
    }
    listeners
}

/// One table as a listener, or `None` when it has a problem (noted).
fn read_listener(
    table: &DeTable<'_>,
    entry: &Value<'_>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<Listener> {
    let before = problems.errors.len();
    problems.unknown_keys(table, &LISTEN_KEYS, "in [[listen]]");
    let addr = match table.get("addr") {
        Some(value) => address(value, problems),
        None => {
            problems.at(&entry.span(), "[[listen]] needs `addr` (\"IP:PORT\")");
            None
        }
    };
    let protocol = table
        .get("protocol")
        .map_or(Some(Protocol::Http), |value| protocol(value, problems));
    let tls = tls_files(table, entry, folder, problems);
    let proxy_protocol_from = table
        .get("proxy_protocol_from")
        .map(|value| networks(value, problems))
        .unwrap_or_default();
    let listener = Listener {
        addr: addr?,
        protocol: protocol?,
        tls,
        proxy_protocol_from,
    };
    if let Err(reason) = listener.check() {
        problems.at(&entry.span(), reason);
    }
    (problems.errors.len() == before).then_some(listener)
}

fn address(value: &Value<'_>, problems: &mut Problems<'_>) -> Option<SocketAddr> {
    let text = problems.string("addr", value)?;
    let addr = text.parse().ok();
    if addr.is_none() {
        problems.at(
            &value.span(),
            format!("`addr`: {text:?} is not IP:PORT (e.g. \"127.0.0.1:1080\", \"[::1]:3129\")"),
        );
    }
    addr
}

fn protocol(value: &Value<'_>, problems: &mut Problems<'_>) -> Option<Protocol> {
    match problems.string("protocol", value)? {
        "http" => Some(Protocol::Http),
        "socks5" => Some(Protocol::Socks5),
        other => {
            problems.at(
                &value.span(),
                format!("`protocol` must be \"http\" or \"socks5\", not {other:?}"),
            );
            None
        }
    }
}

/// `tls_cert` and `tls_key`, both or neither.
fn tls_files(
    table: &DeTable<'_>,
    entry: &Value<'_>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<TlsFiles> {
    let mut path = |key: &str| {
        let value = table.get(key)?;
        let text = problems.string(key, value)?;
        Some(relative_to(folder, text))
    };
    match (path("tls_cert"), path("tls_key")) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            // Only when both keys were not given: a value of the wrong type is noted already.
            if table.get("tls_cert").is_none() || table.get("tls_key").is_none() {
                problems.at(
                    &entry.span(),
                    "`tls_cert` and `tls_key` go together: give both or neither",
                );
            }
            None
        }
    }
}

fn networks(value: &Value<'_>, problems: &mut Problems<'_>) -> Vec<ipnet::IpNet> {
    problems
        .strings("proxy_protocol_from", value)
        .into_iter()
        .filter_map(|(text, span)| match parse_client_net(&text) {
            Ok(net) => Some(net),
            Err(reason) => {
                problems.at(&span, format!("`proxy_protocol_from`: {reason}"));
                None
            }
        })
        .collect()
}
