//! The policy's ordered rules (`[[rules]]` in the configuration file): each rule's
//! conditions, and the first-match evaluation that turns one request into a
//! [`Verdict`]. Conditions a rule omits match anything; the first rule whose conditions
//! all hold decides; when none does, the policy's `default` does.
//!
//! A destination condition may list networks, which a name meets through the addresses
//! it resolves to. Those are known only to the dialer, after DNS, so evaluation runs in
//! two steps: [`RuleBook::evaluate`] walks the rules with everything that needs no DNS,
//! noting the rules whose match depends on the addresses and going on to the rule (or
//! default) that decides without them. If it noted any, the result is an
//! [`AddressCheck`] (`pending.rs`) that the dialer settles with the addresses it
//! resolved, before it connects. The check holds its own `Arc` of the rule book, so a
//! request sees one policy version even if a reload swaps in another meanwhile, and no
//! second DNS or name lookup is ever made.
//!
//! Pure: no I/O, no clock reads (the caller passes the time), no DNS.

mod hours;
mod names;
mod paths;
mod pending;
mod rule;

use std::net::IpAddr;
use std::sync::Arc;

pub use hours::{Clock, FixedClock, SystemClock, WeekTime, Window};
pub use paths::{PathPattern, normalise_path};
pub use pending::AddressCheck;
use pending::{RuleSet, Walk};
pub use rule::{Action, Condition, Rule};

use super::host::{Host, canonical_ip};
use crate::error::Refusal;
use crate::limits::LimitSettings;
use names::NameIndex;
use rule::Match;

/// The frozen rule list and its default, as read from one policy file.
#[derive(Debug, Default)]
pub struct RuleBook {
    rules: Vec<Rule>,
    default: Action,
    /// How logs name the default's decisions; `None` when there is no policy file.
    default_label: Option<Arc<str>>,
    /// Worked out once: admission asks on every request.
    names_users: bool,
    uses_hours: bool,
    uses_paths: bool,
    uses_inspect: bool,
    /// Every rule's destination names in one lookup.
    names: NameIndex,
}

/// What the rules are asked about one request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The authenticated user; `None` for a request without credentials.
    pub user: Option<&'a str>,
    pub client: IpAddr,
    pub host: &'a Host<'a>,
    pub port: u16,
    pub method: &'a str,
    /// The request's path without its query, normalised ([`normalise_path`]); `None` for
    /// a tunnel. Filled only when some rule has `paths` ([`RuleBook::uses_paths`]).
    pub path: Option<&'a str>,
    /// Local time; read only when some rule has `hours` ([`RuleBook::uses_hours`]).
    pub now: Option<WeekTime>,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow {
        rule: Option<Arc<str>>,
        /// The allowing rule's own `limits`, if it sets any.
        limits: Option<Arc<LimitSettings>>,
        /// The allowing rule asks for its tunnels to be inspected (`inspect = true`).
        inspect: bool,
    },
    Deny {
        rule: Option<Arc<str>>,
    },
    /// Nothing allows this request without credentials, but a rule naming `users`
    /// could allow it with them: the client should log in (407), not give up (403).
    AuthRequired {
        rule: Option<Arc<str>>,
    },
}

/// The rules' answer before DNS: decided, or waiting for the destination's addresses.
#[derive(Debug, Clone)]
pub enum Evaluation {
    Decided(Verdict),
    Pending(AddressCheck),
}

impl RuleBook {
    /// `rules` in file order, `default` for requests no rule matches, and how logs name
    /// the default (`None`: the default is implicit, no policy file).
    pub fn new(rules: Vec<Rule>, default: Action, default_label: Option<Arc<str>>) -> RuleBook {
        RuleBook {
            names_users: rules.iter().any(|rule| rule.users.is_some()),
            uses_hours: rules.iter().any(|rule| rule.hours.is_some()),
            uses_paths: rules.iter().any(|rule| rule.paths.is_some()),
            uses_inspect: rules.iter().any(|rule| rule.inspect),
            names: NameIndex::build(&rules),
            rules,
            default,
            default_label,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule names `users`: then authentication is asked for only where
    /// such a rule could allow the request, and anonymous requests meet the rules too.
    pub fn names_users(&self) -> bool {
        self.names_users
    }

    /// Whether some rule has `hours`, so evaluation needs the time.
    pub fn uses_hours(&self) -> bool {
        self.uses_hours
    }

    /// Whether some rule has `paths`, so evaluation needs the request's path.
    pub fn uses_paths(&self) -> bool {
        self.uses_paths
    }

    /// Whether some rule asks for inspection (`inspect = true`).
    pub fn uses_inspect(&self) -> bool {
        self.uses_inspect
    }

    /// Decides on `facts` with everything that needs no DNS.
    pub fn evaluate(self: &Arc<Self>, facts: &Facts<'_>) -> Evaluation {
        // An address literal is its own address: it never waits.
        let literal = match facts.host {
            Host::Ip(ip) => Some([canonical_ip(*ip)]),
            Host::Name(_) => None,
        };
        let listed = self.listed(facts.host);
        let walk = self.walk(facts, literal.as_ref().map(|a| &a[..]), &listed);
        if walk.waiting.is_empty() {
            Evaluation::Decided(self.conclude(&walk))
        } else {
            Evaluation::Pending(AddressCheck::new(Arc::clone(self), walk))
        }
    }

    /// Every rule in order until one matches. A rule whose match waits for the
    /// destination's addresses (`addrs` is `None`) is noted in [`Walk::waiting`] and
    /// the walk goes on, so that what decides if none of the waiting rules match is
    /// known too; settling then needs nothing but the addresses.
    fn walk(
        &self,
        facts: &Facts<'_>,
        addrs: Option<&[IpAddr]>,
        listed: &impl Fn(usize, &Rule) -> bool,
    ) -> Walk {
        let anonymous = facts.user.is_none();
        let mut walk = Walk {
            waiting: RuleSet::default(),
            decided: None,
            authenticates_from: usize::MAX,
        };
        for (index, rule) in self.rules.iter().enumerate() {
            match rule.check(facts, addrs, || listed(index, rule)) {
                Match::Yes => {
                    walk.decided = Some(index);
                    break;
                }
                // The first allow rule an anonymous request misses only by its
                // `users`: every later decision asks for a login rather than refuse.
                Match::No(Condition::Users)
                    if anonymous
                        && walk.authenticates_from == usize::MAX
                        && rule.action == Action::Allow
                        && rule.dest_could_match(|| listed(index, rule)) =>
                {
                    walk.authenticates_from = index + 1;
                }
                Match::No(_) => {}
                Match::NeedsAddresses => walk.waiting.insert(index),
            }
        }
        walk
    }

    /// The verdict of rule `index`, as a walk that reached it found it.
    fn verdict_of(&self, index: usize, walk: &Walk) -> Verdict {
        self.rules[index].verdict(index >= walk.authenticates_from)
    }

    /// The verdict when none of the walk's waiting rules matches.
    fn conclude(&self, walk: &Walk) -> Verdict {
        match walk.decided {
            Some(index) => self.verdict_of(index, walk),
            None => self.default_verdict(walk.authenticates_from != usize::MAX),
        }
    }

    /// Whether rule `index` lists `host` by name: the index is asked at most once for
    /// the request (and only if a rule gets as far as its destination), then a bit per
    /// rule.
    fn listed<'h>(&'h self, host: &'h Host<'h>) -> impl Fn(usize, &Rule) -> bool + 'h {
        let lookup = match host {
            Host::Name(name) => self.names.lookup(name),
            Host::Ip(_) => None,
        };
        move |index, rule| match &lookup {
            Some(lookup) => lookup.lists(index),
            None => rule.lists_name(host),
        }
    }

    fn default_verdict(&self, could_authenticate: bool) -> Verdict {
        let rule = self.default_label.clone();
        match (self.default, could_authenticate) {
            (Action::Allow, _) => Verdict::Allow {
                rule,
                limits: None,
                inspect: false,
            },
            (Action::Deny, true) => Verdict::AuthRequired { rule },
            (Action::Deny, false) => Verdict::Deny { rule },
        }
    }

    /// Every rule up to the deciding one, with the condition that did not hold for each
    /// rule that did not match (`None` for the one that decided), for `explain`.
    /// `addrs` are the destination's resolved addresses (empty when it did not resolve).
    pub fn trace(&self, facts: &Facts<'_>, addrs: &[IpAddr]) -> (Verdict, Vec<Step<'_>>) {
        let mut steps = Vec::new();
        let listed = self.listed(facts.host);
        for (index, rule) in self.rules.iter().enumerate() {
            match rule.check(facts, Some(addrs), || listed(index, rule)) {
                Match::No(condition) => steps.push(Step { rule, condition }),
                Match::Yes | Match::NeedsAddresses => break,
            }
        }
        let verdict = self.conclude(&self.walk(facts, Some(addrs), &listed));
        (verdict, steps)
    }
}

/// One rule that did not match, and the first of its conditions that failed.
#[derive(Debug)]
pub struct Step<'a> {
    pub rule: &'a Rule,
    pub condition: Condition,
}

/// The 403 reason for a rule's denial (the rule named, so "why is this blocked" has its
/// answer in the body).
pub fn refusal(rule: Option<Arc<str>>) -> Refusal {
    let reason = match &rule {
        Some(label) => format!("refused by the proxy's access policy ({label})"),
        None => "refused by the proxy's access policy".to_string(),
    };
    Refusal {
        brief: "policy-deny",
        reason,
        rule,
    }
}

#[cfg(test)]
mod tests;
