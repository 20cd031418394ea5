//! The egress flags: parent proxies for all traffic (`--parent`, `--parent-backoff`) and
//! the header controls (`--via`, `--forwarded-for`), turned into the dialer's
//! [`EgressSettings`] and the forwarder's [`HeaderEdits`]. Named parents, routes and the
//! `[headers]` lists come from the configuration file (`config/file/egress.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::http::edits::{ForwardedFor, HeaderEdits};
use crate::upstream::{DEFAULT_PARENT_BACKOFF_SECS, EgressSettings, Hop, Parent};

/// Parent proxies and what forwarded requests carry.
#[derive(clap::Args, Debug, Clone)]
pub struct EgressFlags {
    /// Send all traffic through this parent proxy: `http://`, `https://`, `socks5://` or
    /// `socks5h://`, with optional `user:password@` and the port, e.g.
    /// http://user:pass@proxy.corp.example:3128. Repeat (or separate with commas) for
    /// fallbacks, tried in order [default: direct]
    #[arg(long = "parent", value_name = "URL", value_delimiter = ',', value_parser = parent)]
    pub parents: Vec<Arc<Parent>>,

    /// Seconds a parent proxy that could not be reached is skipped; doubled for each
    /// failure in a row, up to 32 times this.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PARENT_BACKOFF_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub parent_backoff: u64,

    /// Add this proxy to the `Via` field of requests and responses (`on` or `off`).
    /// Off also leaves chained instances unable to see this one in a forwarding loop.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off,
          action = clap::ArgAction::Set)]
    pub via: bool,

    /// What `X-Forwarded-For` tells the origin about the client, as Squid's
    /// `forwarded_for`: `on` appends the client's address, `off` appends `unknown`,
    /// `delete` removes the field, `transparent` passes it unchanged.
    #[arg(long, value_name = "MODE", default_value = "transparent", value_parser = ForwardedFor::parse)]
    pub forwarded_for: ForwardedFor,
}

impl EgressFlags {
    /// The dialer's settings: the `--parent` list as the hops for every destination.
    pub fn egress(&self) -> EgressSettings {
        let fallback = match self.parents.len() {
            0 => vec![Hop::Direct],
            n => (0..n).map(Hop::Parent).collect(),
        };
        EgressSettings {
            parents: self.parents.clone(),
            routes: Vec::new(),
            fallback,
            backoff: Duration::from_secs(self.parent_backoff),
        }
    }

    /// The header settings; the file's `[headers]` lists join them.
    pub fn headers(&self) -> HeaderEdits {
        HeaderEdits {
            via: self.via,
            forwarded_for: self.forwarded_for,
            ..HeaderEdits::default()
        }
    }
}

/// A `--parent` URL, named by its `host:port` in logs and metrics.
fn parent(url: &str) -> Result<Arc<Parent>, String> {
    let parsed = crate::upstream::parse_parent_url(url)?;
    let name = match parsed.host.contains(':') {
        true => format!("[{}]:{}", parsed.host, parsed.port),
        false => format!("{}:{}", parsed.host, parsed.port),
    };
    Parent::new(name.into(), url, || crate::tls::client_config(None)).map(Arc::new)
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}
