//! Who may use the proxy to reach what. Owns the live access state built from the
//! settings — the ACL [`Policy`] (safe defaults and the blacklist), the policy's
//! ordered rules ([`RuleBook`]), the [`Authenticator`] and everyone's limits, held together behind one
//! atomic pointer so a request sees one consistent version and `SIGHUP` can swap in
//! freshly read files without disturbing connections in flight (a reload that fails
//! leaves the old state in force) — and the one admission decision every front end asks
//! for (`admission`). No sockets here: front ends bring what the client said.

mod admission;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::acl::{self, Clock, Policy, PortSet, RuleBook, Rules, SystemClock};
use crate::auth::{Authenticator, load_users};
use crate::files::{FileErrors, LineError, on_sighup};
use crate::limits::LimitSettings;
pub use admission::{
    AUTH_MISSING, Admission, ClientCredentials, Decision, NotAuthenticated, decision,
};

/// What access control runs with: the files it reads and the settings beside them. The
/// default is the safe one: no files, local targets refused, CONNECT to 443 only.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// The users file (Basic authentication); `None`: authentication is off.
    pub auth_file: Option<PathBuf>,
    /// The destination rules file; `None`: no rules.
    pub blacklist: Option<PathBuf>,
    /// Whether loopback, link-local and unspecified destinations are allowed.
    pub allow_local_targets: bool,
    /// Ports CONNECT may reach.
    pub connect_ports: PortSet,
    /// Networks clients must come from; `None`: any client.
    pub allow_clients: Option<Vec<IpNet>>,
    /// The policy file's ordered rules (`--config`); `None`: no rules, everything the
    /// safe defaults and the blacklist let through is allowed.
    pub rules: Option<Arc<RuleBook>>,
    /// Everyone's limits (`[limits]`); rules may carry their own.
    pub limits: Arc<LimitSettings>,
    /// Where rules with `hours` read the local time; `None`: the host's clock.
    pub clock: Option<Arc<dyn Clock>>,
}

/// One consistent version of the access state.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Arc<Policy>,
    /// `None` when no `--auth-file` was given: authentication is off.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The ordered rules (empty without a policy file).
    pub rules: Arc<RuleBook>,
    /// Everyone's limits.
    pub limits: Arc<LimitSettings>,
    pub clock: Arc<dyn Clock>,
}

/// A cheap, cloneable handle on the current access state.
#[derive(Debug, Clone)]
pub struct AccessControl {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ArcSwap<AccessSettings>,
    current: ArcSwap<Snapshot>,
}

impl AccessControl {
    /// Reads the files the settings name. Errors from both files are reported together.
    pub fn load(settings: &AccessSettings) -> Result<AccessControl, FileErrors> {
        let snapshot = read_files(settings)?;
        Ok(AccessControl {
            inner: Arc::new(Inner {
                settings: ArcSwap::from_pointee(settings.clone()),
                current: ArcSwap::from_pointee(snapshot),
            }),
        })
    }

    /// The current policy and authenticator together, for one request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.inner.current.load().policy)
    }

    pub fn authenticator(&self) -> Option<Arc<Authenticator>> {
        self.inner.current.load().authenticator.clone()
    }

    pub fn auth_required(&self) -> bool {
        self.inner.settings.load().auth_file.is_some()
    }

    /// Re-reads both files and swaps them in together. If either fails, nothing
    /// changes and the errors are returned.
    pub fn reload(&self) -> Result<(), FileErrors> {
        self.replace(&self.inner.settings.load())
    }

    /// Swaps in state built from new settings (a re-read policy file) and the files they
    /// name, all together; if anything fails, nothing changes.
    pub fn replace(&self, settings: &AccessSettings) -> Result<(), FileErrors> {
        let snapshot = read_files(settings)?;
        self.inner.settings.store(Arc::new(settings.clone()));
        self.inner.current.store(Arc::new(snapshot));
        Ok(())
    }

    /// [`AccessControl::reload`], logging the outcome with every `file:line` error.
    pub fn reload_and_log(&self) -> bool {
        self.replace_and_log(Ok(self.inner.settings.load_full().as_ref().clone()))
    }

    /// [`AccessControl::replace`] with freshly read settings (or the errors reading
    /// them), logging the outcome with every `file:line` error.
    pub fn replace_and_log(&self, settings: Result<AccessSettings, FileErrors>) -> bool {
        match settings.and_then(|settings| self.replace(&settings)) {
            Ok(()) => {
                let snapshot = self.snapshot();
                let (names, wildcards, networks) = snapshot.policy.rules.counts();
                let users = snapshot
                    .authenticator
                    .as_ref()
                    .map_or(0, |a| a.user_count());
                let rules = snapshot.rules.rules().len();
                tracing::info!(
                    names,
                    wildcards,
                    networks,
                    users,
                    rules,
                    "access files reloaded"
                );
                true
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(%error, "reload failed; keeping the previous access files");
                }
                false
            }
        }
    }
}

fn read_files(args: &AccessSettings) -> Result<Snapshot, FileErrors> {
    let rules = args.blacklist.as_deref().map(acl::load).transpose();
    let users = args.auth_file.as_deref().map(load_users).transpose();
    let book = args.rules.clone().unwrap_or_default();
    let mut errors = Vec::new();
    if args.auth_file.is_none()
        && let Some(rule) = book.rules().iter().find(|rule| rule.users.is_some())
    {
        errors.push(LineError {
            file: rule.file.clone(),
            line: rule.line,
            reason: "this rule names users, but no auth_file is set to log them in".into(),
        });
    }
    match (rules, users) {
        (Ok(rules), Ok(users)) if errors.is_empty() => Ok(Snapshot {
            policy: Arc::new(Policy {
                rules: rules.unwrap_or_else(Rules::default),
                allow_local_targets: args.allow_local_targets,
                connect_ports: args.connect_ports.clone(),
                allow_clients: args.allow_clients.clone(),
            }),
            authenticator: users.map(|u| Arc::new(Authenticator::new(u))),
            rules: book,
            limits: Arc::clone(&args.limits),
            clock: args.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
        }),
        (rules, users) => {
            errors.extend(rules.err().map(|e| e.0).unwrap_or_default());
            errors.extend(users.err().map(|e| e.0).unwrap_or_default());
            Err(FileErrors(errors))
        }
    }
}

/// Warns loudly when the proxy listens beyond loopback with neither authentication
/// nor a client allow list: anyone who can reach it can use it. Returns whether it warned.
pub fn warn_if_open_proxy(bind: IpAddr, args: &AccessSettings) -> bool {
    let open = !acl::canonical_ip(bind).is_loopback()
        && args.auth_file.is_none()
        && args.allow_clients.is_none();
    if open {
        tracing::warn!(
            %bind,
            "OPEN PROXY: listening on a non-loopback address with neither --auth-file nor \
             --allow-clients; anyone who can reach this port can relay traffic through it"
        );
    }
    open
}

/// Re-reads the access state on every `SIGHUP` ([`on_sighup`]): `reread` returns the
/// settings as they now stand (the policy file read again, or the same flags), and the
/// files they name are read and swapped in together — or, on any error, nothing changes
/// and every `file:line` is logged. Spawn the result once at startup.
pub fn reload_on_sighup(
    access: AccessControl,
    mut reread: impl FnMut() -> Result<AccessSettings, FileErrors> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    on_sighup("access files", move || {
        tracing::info!("SIGHUP: reloading the access policy");
        access.replace_and_log(reread());
    })
}

#[cfg(test)]
mod tests;
