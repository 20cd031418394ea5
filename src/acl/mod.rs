//! Access-control lists: which clients may use the proxy and which destinations it
//! may reach. Three things with three names:
//! - [`Baseline`] (`baseline/`): the checks before any rule — the client allow list,
//!   local targets, CONNECT ports and the `--blacklist`;
//! - [`DestList`] (`dest_list/`): one frozen list of names, wildcards and networks, read
//!   and validated line by line — the blacklist, a rule's `dest`, a route's `dest` —
//!   whose lookup cost does not grow with the list (hash sets of name suffixes, a
//!   sorted range table of networks);
//! - [`RuleBook`] (`rulebook/`): the policy file's ordered, named rules (who may reach
//!   what, when; first match wins).
//!
//! Pure decisions: no I/O besides reading the list files, no DNS — the caller resolves
//! and passes every address to [`Baseline::check_addrs`].

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
    Action, AddressCheck, Clock, Condition, Evaluation, Facts, FixedClock, PathPattern, Rule,
    RuleBook, Step, SystemClock, Verdict, WeekTime, Window, normalise_path, refusal,
};
