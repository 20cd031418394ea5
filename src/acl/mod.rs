//! Access-control lists: which clients may use the proxy and which destinations it
//! may reach, and the policy's ordered rules (`rulebook`: who may reach what, when).
//! Blacklist rules are read from the `--blacklist` file, validated line by line, and
//! frozen into lookup structures whose cost does not grow with the list (hash sets of
//! name suffixes, a sorted range table of networks). Pure decisions: no I/O besides
//! reading the rules file, no DNS — the caller resolves and passes every address to
//! [`Baseline::check_addrs`].

mod baseline;
mod dest_list;
mod domains;
mod host;
mod netset;
mod ports;
mod rulebook;

pub use baseline::{Baseline, Denial, is_local, parse_client_net};
pub use dest_list::{DestList, DestListBuilder, Entry, HOSTS_FILE_SELF_NAMES, Listed, load, parse};
pub use host::{Host, canonical_ip, nat64_embedded, normalise};
pub use netset::NetSet;
pub use ports::{DEFAULT_CONNECT_PORTS, PortSet};
pub use rulebook::{
    Action, AddressCheck, Clock, Condition, Evaluation, Facts, FixedClock, Rule, RuleBook, Step,
    SystemClock, Verdict, WeekTime, Window, refusal,
};
