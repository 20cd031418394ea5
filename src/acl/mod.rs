//! Access-control lists: which clients may use the proxy and which destinations it
//! may reach, and the policy's ordered rules (`rulebook`: who may reach what, when).
//! Blacklist rules are read from the `--blacklist` file, validated line by line, and
//! frozen into lookup structures whose cost does not grow with the list (hash sets of
//! name suffixes, a sorted range table of networks). Pure decisions: no I/O besides
//! reading the rules file, no DNS — the caller resolves and passes every address to
//! [`Policy::check_addrs`].

mod domains;
mod host;
mod netset;
mod policy;
mod ports;
mod rulebook;
mod rules;

pub use host::{Host, canonical_ip, nat64_embedded, normalise};
pub use netset::NetSet;
pub use policy::{Denial, Policy, is_local, parse_client_net};
pub use ports::{DEFAULT_CONNECT_PORTS, PortSet};
pub use rulebook::{
    Action, AddressCheck, Clock, Condition, Evaluation, Facts, FixedClock, Rule, RuleBook, Step,
    SystemClock, Verdict, WeekTime, Window, refusal,
};
pub use rules::{Entry, HOSTS_FILE_SELF_NAMES, Listed, Rules, RulesBuilder, load, parse};
