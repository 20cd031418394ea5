//! Who may use the proxy to reach what. Owns the live access state built from the
//! settings — the ACL [`Baseline`] (safe defaults and the blacklist), the policy's
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

use crate::acl::{self, Baseline, Clock, DestList, PortSet, RuleBook, SystemClock};
use crate::auth::{Authenticator, load_users};
use crate::files::{FileErrors, LineError, Reload};
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
    pub baseline: Arc<Baseline>,
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

    pub fn baseline(&self) -> Arc<Baseline> {
        Arc::clone(&self.inner.current.load().baseline)
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
    /// name, all together; if anything fails, nothing changes. A list that had entries
    /// and now has none is logged at `warn` (see [`emptied_lists`]).
    pub fn replace(&self, settings: &AccessSettings) -> Result<(), FileErrors> {
        let snapshot = read_files(settings)?;
        let previous = self.inner.current.load_full();
        for list in emptied_lists(&previous, &snapshot, settings) {
            tracing::warn!(
                "this reload emptied {list}, which had entries: if the file was rewritten \
                 in place (`>`), the reload may have read it half-written; write the new \
                 file beside it and `mv` it over the old one, then reload again"
            );
        }
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
                let (names, wildcards, networks) = snapshot.baseline.rules.counts();
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
            baseline: Arc::new(Baseline {
                rules: rules.unwrap_or_else(DestList::default),
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

/// The lists that had entries in `old` and have none in `new`, each named for the log:
/// the blacklist (an empty one refuses nothing: the list fails open), the users file
/// (everyone is refused), and a policy rule's destinations (`dest` and `dest_files`; the
/// rule then matches nothing), matched by the rule's label. A file rewritten in place
/// (`> file`) is empty between its truncation and the new text, and a `SIGHUP` in that
/// moment reads it so: nothing else tells that apart from a list emptied on purpose.
fn emptied_lists(old: &Snapshot, new: &Snapshot, settings: &AccessSettings) -> Vec<String> {
    let entries = |rules: &DestList| {
        let (names, wildcards, networks) = rules.counts();
        names + wildcards + networks
    };
    let path = |file: &Option<PathBuf>| {
        file.as_ref()
            .map_or(String::new(), |f| format!(" ({})", f.display()))
    };
    let mut emptied = Vec::new();
    if entries(&old.baseline.rules) > 0 && entries(&new.baseline.rules) == 0 {
        emptied.push(format!("the blacklist{}", path(&settings.blacklist)));
    }
    let users = |snapshot: &Snapshot| snapshot.authenticator.as_ref().map(|a| a.user_count());
    if users(old).is_some_and(|n| n > 0) && users(new) == Some(0) {
        emptied.push(format!("the users file{}", path(&settings.auth_file)));
    }
    for rule in new.rules.rules() {
        let now_empty = rule.dest.as_ref().is_some_and(|dest| entries(dest) == 0);
        let had_entries = || {
            let before = old.rules.rules().iter().find(|r| r.label == rule.label);
            before
                .and_then(|r| r.dest.as_ref())
                .is_some_and(|dest| entries(dest) > 0)
        };
        if now_empty && had_entries() {
            emptied.push(format!("the destinations of {}", rule.label));
        }
    }
    emptied
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

/// The access state as `SIGHUP` re-reads it: `reread` returns the settings as they now
/// stand (the policy file read again, or the same flags), and the files they name are
/// read and swapped in together — or, on any error, nothing changes and every
/// `file:line` is logged.
pub struct AccessReload<F> {
    access: AccessControl,
    reread: F,
}

impl<F> AccessReload<F>
where
    F: Fn() -> Result<AccessSettings, FileErrors> + Send + Sync,
{
    pub fn new(access: AccessControl, reread: F) -> AccessReload<F> {
        AccessReload { access, reread }
    }
}

impl<F> Reload for AccessReload<F>
where
    F: Fn() -> Result<AccessSettings, FileErrors> + Send + Sync,
{
    fn reload(&self) {
        tracing::info!("SIGHUP: reloading the access policy");
        self.access.replace_and_log((self.reread)());
    }
}

#[cfg(test)]
mod tests;
