//! One policy rule: its conditions and how a request meets them. Conditions are checked
//! cheapest first — client network, port, method, time, user — and the destination
//! last, as it may need the addresses a name resolves to. A destination network meets
//! a name through every address: an `allow` rule's networks must hold all of them, a
//! `deny` rule's networks any one of them (one internal address among public ones is
//! what a DNS-rebinding attack looks like), so a name never slips past either way.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::Facts;
use super::Verdict;
use super::hours::Window;
use crate::acl::host::{Host, canonical_ip};
use crate::acl::{DestList, NetSet, PortSet};
use crate::limits::LimitSettings;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// A rule's condition, as the policy file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Users,
    Clients,
    Dest,
    Ports,
    Methods,
    Hours,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Condition::Users => "users",
            Condition::Clients => "clients",
            Condition::Dest => "dest",
            Condition::Ports => "ports",
            Condition::Methods => "methods",
            Condition::Hours => "hours",
        })
    }
}

/// How a request meets one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    Yes,
    /// The first condition that does not hold.
    No(Condition),
    /// Every other condition holds; the destination's networks need its addresses.
    NeedsAddresses,
}

/// One `[[rules]]` entry, frozen. `None` for a condition the rule does not give.
#[derive(Debug, Default)]
pub struct Rule {
    /// How logs, metrics and the 403 body name the rule: its `name`, or its number,
    /// with `file:line`.
    pub label: Arc<str>,
    pub name: Option<String>,
    /// 1 for the file's first rule.
    pub number: usize,
    /// The policy file and the line of the rule's `[[rules]]` header.
    pub file: String,
    pub line: usize,
    pub action: Action,
    /// User names, groups already expanded.
    pub users: Option<HashSet<Box<str>>>,
    pub clients: Option<NetSet>,
    pub dest: Option<DestList>,
    pub ports: Option<PortSet>,
    /// Methods as sent; compared case-sensitively (RFC 9110 §9.1).
    pub methods: Option<Vec<Box<str>>>,
    pub hours: Option<Vec<Window>>,
    pub limits: Option<Arc<LimitSettings>>,
}

impl Rule {
    /// `"name" (rule 2, file:line)` or `rule 2 (file:line)`.
    pub fn make_label(name: Option<&str>, number: usize, file: &str, line: usize) -> Arc<str> {
        let place = format!("{file}:{line}");
        match name {
            Some(name) => format!("{name:?} (rule {number}, {place})").into(),
            None => format!("rule {number} ({place})").into(),
        }
    }

    pub(super) fn verdict(&self, could_authenticate: bool) -> Verdict {
        let rule = Some(Arc::clone(&self.label));
        match (self.action, could_authenticate) {
            (Action::Allow, _) => Verdict::Allow {
                rule,
                limits: self.limits.clone(),
            },
            (Action::Deny, true) => Verdict::AuthRequired { rule },
            (Action::Deny, false) => Verdict::Deny { rule },
        }
    }

    /// `addrs`: the destination's addresses when known (an address literal's own);
    /// `listed`: whether the host is a name this rule's `dest` lists (the rule book's
    /// name index answers that for every rule at once), asked only when every other
    /// condition holds.
    pub(super) fn check(
        &self,
        facts: &Facts<'_>,
        addrs: Option<&[IpAddr]>,
        listed: impl Fn() -> bool,
    ) -> Match {
        if let Some(condition) = self.first_miss_before_dest(facts) {
            return Match::No(condition);
        }
        if let Some(users) = &self.users
            && !facts.user.is_some_and(|user| users.contains(user))
        {
            return Match::No(Condition::Users);
        }
        self.check_dest(addrs, listed)
    }

    /// For a rule that [`check`](Self::check) found short of only its `users`: whether
    /// its destination could still match (or waits for addresses), so that the right
    /// user would meet it.
    pub(super) fn dest_could_match(&self, listed: impl Fn() -> bool) -> bool {
        self.check_dest(None, listed) != Match::No(Condition::Dest)
    }

    /// Whether this rule's `dest` lists `host` by name (its own lookup, for rule books
    /// too long for the shared index).
    pub(super) fn lists_name(&self, host: &Host<'_>) -> bool {
        match (host, &self.dest) {
            (Host::Name(name), Some(dest)) => dest.blocks_name(name),
            _ => false,
        }
    }

    pub(super) fn first_miss_before_dest(&self, facts: &Facts<'_>) -> Option<Condition> {
        if let Some(clients) = &self.clients
            && !clients.contains(facts.client)
        {
            return Some(Condition::Clients);
        }
        if let Some(ports) = &self.ports
            && !ports.contains(facts.port)
        {
            return Some(Condition::Ports);
        }
        if let Some(methods) = &self.methods
            && !methods.iter().any(|m| **m == *facts.method)
        {
            return Some(Condition::Methods);
        }
        if let Some(hours) = &self.hours
            && !facts
                .now
                .is_some_and(|now| hours.iter().any(|w| w.contains(now)))
        {
            return Some(Condition::Hours);
        }
        None
    }

    fn check_dest(&self, addrs: Option<&[IpAddr]>, listed: impl Fn() -> bool) -> Match {
        let Some(dest) = &self.dest else {
            return Match::Yes;
        };
        if listed() {
            return Match::Yes;
        }
        if !dest.has_networks() {
            return Match::No(Condition::Dest);
        }
        let Some(addrs) = addrs else {
            return Match::NeedsAddresses;
        };
        if self.networks_match(addrs) {
            Match::Yes
        } else {
            Match::No(Condition::Dest)
        }
    }

    /// Whether the destination's addresses meet this rule's networks: any one of them
    /// for a `deny` rule, every one for an `allow` rule.
    pub(super) fn networks_match(&self, addrs: &[IpAddr]) -> bool {
        let Some(dest) = &self.dest else {
            return false;
        };
        let inside = |ip: &IpAddr| dest.blocks_addr(canonical_ip(*ip));
        match self.action {
            Action::Deny => addrs.iter().any(inside),
            Action::Allow => !addrs.is_empty() && addrs.iter().all(inside),
        }
    }
}
