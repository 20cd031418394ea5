//! The start-up summary: a few `info` lines, right after the listeners are announced,
//! that say what this process is doing — each listener and its protocol, where users
//! and clients come from, the policy file and its rule count, the cache, the log folder
//! and the metrics address — and one `warn` line for each unsafe choice: an open proxy
//! on a non-loopback address (`access::warn_if_open_proxy`, the one place that wording
//! lives), a non-loopback listener without authentication, the unauthenticated metrics
//! listener beyond loopback, local targets allowed.
//!
//! It only reads the settings and what was loaded from them; it decides nothing. The
//! `listening on ADDR` line that scripts wait for stays in `process::announce`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::access;
use crate::acl::canonical_ip;
use crate::config::{Listener, Settings};
use crate::conn::Services;

/// What the summary says, apart from the open-proxy warning (logged by `access`).
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub info: Vec<String>,
    pub warnings: Vec<String>,
}

/// What was loaded, as the summary needs it.
pub struct Loaded<'a> {
    /// The listeners with the addresses actually bound.
    pub listeners: &'a [Listener],
    /// The configuration file (`--config`), if any.
    pub config_file: Option<&'a Path>,
    /// Ordered rules in the policy.
    pub rules: usize,
    /// Users in the users file; `None` without one.
    pub users: Option<usize>,
    /// The metrics listener's bound address.
    pub metrics: Option<SocketAddr>,
}

/// Logs the summary of a process about to serve; the listeners are bound.
pub fn log(settings: &Settings, services: &Services, listeners: &[Listener], file: Option<&Path>) {
    let access = services.access.snapshot();
    let loaded = Loaded {
        listeners,
        config_file: file,
        rules: access.rules.rules().len(),
        users: access.authenticator.as_ref().map(|a| a.user_count()),
        metrics: services.metrics_addr,
    };
    let summary = summarize(settings, &loaded);
    for line in &summary.info {
        tracing::info!("{line}");
    }
    for listener in listeners {
        access::warn_if_open_proxy(listener.addr.ip(), &settings.config.access);
    }
    for line in &summary.warnings {
        tracing::warn!("{line}");
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    canonical_ip(ip).is_loopback()
}

/// The summary's lines for `settings` and what was loaded from them.
pub fn summarize(settings: &Settings, loaded: &Loaded<'_>) -> Summary {
    let config = &settings.config;
    let access = &config.access;
    let mut info = Vec::new();
    let mut warnings = Vec::new();

    let mut line = String::from("listeners:");
    for (i, listener) in loaded.listeners.iter().enumerate() {
        let protocol = match (listener.protocol.label(), listener.tls.is_some()) {
            ("http", true) => "https",
            (label, _) => label,
        };
        let _ = write!(
            line,
            "{} {protocol} {}",
            if i == 0 { "" } else { "," },
            listener.addr
        );
        if !listener.proxy_protocol_from.is_empty() {
            let _ = write!(
                line,
                " (PROXY protocol from {})",
                join(&listener.proxy_protocol_from)
            );
        }
    }
    info.push(line);

    let users = match (&access.auth_file, loaded.users) {
        (Some(file), Some(count)) => {
            format!("users: {count} in {} (login required)", file.display())
        }
        _ => "users: no login (no auth_file)".to_string(),
    };
    let clients = match &access.allow_clients {
        Some(networks) => format!("clients: only from {}", join(networks)),
        None => "clients: any address that reaches a listener".to_string(),
    };
    info.push(format!("{users}; {clients}"));

    let mut policy = match loaded.config_file {
        Some(file) => format!("policy: {}, {} rules", file.display(), loaded.rules),
        None => "policy: no policy file (no rules)".to_string(),
    };
    match &access.blacklist {
        Some(list) => {
            let _ = write!(policy, "; blacklist {}", list.display());
        }
        None => policy.push_str("; no blacklist"),
    }
    info.push(policy);

    let cache = match &config.cache {
        Some(cache) => format!("cache: {} MiB", cache.capacity / (1024 * 1024)),
        None => "cache: off".to_string(),
    };
    let metrics = match loaded.metrics {
        Some(addr) => format!("metrics: http://{addr}/"),
        None => "metrics: off".to_string(),
    };
    info.push(format!(
        "{cache}; logs: {}; {metrics}",
        settings.log.dir.display()
    ));

    let no_login = access.auth_file.is_none();
    if let Some(networks) = &access.allow_clients {
        for listener in loaded.listeners {
            if no_login && !is_loopback(listener.addr.ip()) {
                warnings.push(format!(
                    "no authentication on {}: any client in {} can relay through it",
                    listener.addr,
                    join(networks)
                ));
            }
        }
    }
    if let Some(addr) = loaded.metrics.filter(|addr| !is_loopback(addr.ip())) {
        warnings.push(format!(
            "metrics on {addr}, beyond loopback: /stats and the dashboard have no \
             authentication and name users and destinations"
        ));
    }
    if access.allow_local_targets {
        warnings.push(
            "allow_local_targets: clients can reach this machine's own loopback services \
             through the proxy"
                .to_string(),
        );
    }
    Summary { info, warnings }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    let texts: Vec<String> = items.iter().map(ToString::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Listener};
    use clap::Parser as _;

    fn settings(args: &[&str]) -> Settings {
        let mut all = vec!["proxy-server"];
        all.extend_from_slice(args);
        Cli::parse_from(all).settings()
    }

    fn loaded(listeners: &[Listener]) -> Loaded<'_> {
        Loaded {
            listeners,
            config_file: None,
            rules: 0,
            users: None,
            metrics: None,
        }
    }

    #[test]
    fn a_plain_start_says_what_runs_and_warns_of_nothing() {
        let settings = settings(&["--cache", "--cache-size", "32", "--log-dir", "/tmp/l"]);
        let listeners = [Listener::http("127.0.0.1:8888".parse().unwrap())];
        let summary = summarize(&settings, &loaded(&listeners));
        assert_eq!(
            summary.info,
            [
                "listeners: http 127.0.0.1:8888",
                "users: no login (no auth_file); clients: any address that reaches a listener",
                "policy: no policy file (no rules); no blacklist",
                "cache: 32 MiB; logs: /tmp/l; metrics: off",
            ]
        );
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }

    #[test]
    fn unsafe_choices_each_get_a_warning() {
        let settings = settings(&["--allow-clients", "10.0.0.0/8", "--allow-local-targets"]);
        let listeners = [
            Listener::http("192.0.2.1:3128".parse().unwrap()),
            Listener::socks5("127.0.0.1:1080".parse().unwrap()),
        ];
        let summary = summarize(
            &settings,
            &Loaded {
                metrics: Some("0.0.0.0:9898".parse().unwrap()),
                ..loaded(&listeners)
            },
        );
        assert_eq!(
            summary.info[0],
            "listeners: http 192.0.2.1:3128, socks5 127.0.0.1:1080"
        );
        assert!(
            summary.info[1].ends_with("clients: only from 10.0.0.0/8"),
            "{:?}",
            summary.info
        );
        let warnings = summary.warnings.join("\n");
        assert_eq!(summary.warnings.len(), 3, "{warnings}");
        assert!(
            warnings.contains("no authentication on 192.0.2.1:3128"),
            "{warnings}"
        );
        assert!(
            !warnings.contains("127.0.0.1:1080"),
            "loopback is fine: {warnings}"
        );
        assert!(warnings.contains("metrics on 0.0.0.0:9898"), "{warnings}");
        assert!(warnings.contains("allow_local_targets"), "{warnings}");
    }

    #[test]
    fn a_login_on_a_public_listener_is_not_warned_about() {
        let settings = settings(&["--auth-file", "/etc/users", "--allow-clients", "10.0.0.0/8"]);
        let listeners = [Listener::http("192.0.2.1:3128".parse().unwrap())];
        let summary = summarize(
            &settings,
            &Loaded {
                users: Some(3),
                config_file: Some(Path::new("/etc/p.toml")),
                rules: 4,
                ..loaded(&listeners)
            },
        );
        assert!(summary.info[1].starts_with("users: 3 in /etc/users (login required)"));
        assert_eq!(
            summary.info[2],
            "policy: /etc/p.toml, 4 rules; no blacklist"
        );
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }
}
