//! A destination list (the `--blacklist` file, a rule's `dest`, a route's `dest`):
//! reading its lines into entries and freezing them into lookup structures (two hash
//! maps of names, a [`NetSet`] of networks). Matching a name costs one hash lookup per
//! label; matching an address one binary search.
//! This module decides only what is listed; what to do about it is [`super::Baseline`]'s.
//!
//! Each entry keeps, beside it in the tables, a `u32` naming where it was written: the
//! line's number offset by where its file's lines start among all the files read, so a
//! refusal can say `blocked.txt:12 (*.ads.com)` while a lookup still touches no string.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use super::domains::NameTable;
use super::host::{canonical_ip, name_problem};
use super::netset::NetSet;
use crate::files::{FileErrors, LineError, WHOLE_FILE, content_lines};

/// Names that hosts files carry for the machine itself (Debian's and macOS's
/// `/etc/hosts`, and the header of most public blocklists). In hosts-file form they
/// are skipped, not blocked: loopback is already refused unless
/// `--allow-local-targets` is given, and blocking `localhost` by name would make
/// that flag useless as soon as a public list is loaded.
pub const HOSTS_FILE_SELF_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Where an entry was written: 0 for an entry given without a file (a policy rule's
/// inline `dest` list), else the line's number plus the first id of its file's lines
/// (see [`DestListBuilder::add_text`]).
type EntryId = u32;

/// The id of an entry that came from no file.
const UNNAMED: EntryId = 0;

/// The list entry a name or an address matched: the file and line it is written on
/// and the entry, shown as `file:line (entry)`. Made only for a refusal; its text is
/// written only when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub file: Arc<str>,
    pub line: u32,
    pub entry: Entry,
}

/// One entry, in canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `example.com`: that name.
    Name(Box<str>),
    /// `*.ads.com`, held as `ads.com`.
    Wildcard(Box<str>),
    /// A network, or an address as a one-address network.
    Net(IpNet),
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.file, self.line, self.entry)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Name(name) => f.write_str(name),
            Entry::Wildcard(domain) => write!(f, "*.{domain}"),
            Entry::Net(net) => write!(f, "{net}"),
        }
    }
}

/// The files entries were read from: each file's name and the id before its first line.
#[derive(Debug, Clone, Default)]
struct Sources(Box<[(EntryId, Arc<str>)]>);

impl Sources {
    fn listed(&self, id: EntryId, entry: impl FnOnce() -> Entry) -> Option<Listed> {
        if id == UNNAMED {
            return None;
        }
        let index = self
            .0
            .partition_point(|(base, _)| *base < id)
            .checked_sub(1)?;
        let (base, file) = &self.0[index];
        Some(Listed {
            file: Arc::clone(file),
            line: id - base,
            entry: entry(),
        })
    }
}

/// The frozen rule set. Cheap to query, never mutated after [`parse`].
#[derive(Debug, Clone, Default)]
pub struct DestList {
    /// `example.com`: that host only.
    exact: NameTable<EntryId>,
    /// `*.ads.com` is stored as `ads.com`: any host with it as a proper suffix.
    wildcard: NameTable<EntryId>,
    nets: NetSet,
    sources: Sources,
}

impl DestList {
    /// The entry a canonical host name matches ([`DestList::blocks_name`]), when it came
    /// from a file: an exact entry first, else the shortest wildcard domain.
    pub fn listed_name(&self, name: &str) -> Option<Listed> {
        if let Some(&id) = self.exact.get(name) {
            return self.sources.listed(id, || Entry::Name(name.into()));
        }
        let (domain, &id) = self.wildcard.suffixes(name).next()?;
        self.sources.listed(id, || Entry::Wildcard(domain.into()))
    }

    /// The entry an address matches ([`DestList::blocks_addr`]), when it came from a file:
    /// the most specific network.
    pub fn listed_addr(&self, ip: IpAddr) -> Option<Listed> {
        let (net, id) = self.nets.find(ip)?;
        self.sources.listed(id, || Entry::Net(net))
    }

    /// Whether a canonical (lower-case, no trailing dot) host name is listed, exactly
    /// or under a wildcard. `*.ads.com` matches `x.ads.com` and `a.b.ads.com`, but
    /// neither `ads.com` nor `notads.com`: only suffixes that start after a dot are tried.
    pub fn blocks_name(&self, name: &str) -> bool {
        (!self.exact.is_empty() && self.exact.contains(name))
            || (!self.wildcard.is_empty() && self.wildcard.suffixes(name).next().is_some())
    }

    /// The exact names, and the domains of the `*.` wildcards, for indexes built over
    /// several rule sets.
    pub fn names(&self) -> (impl Iterator<Item = &str>, impl Iterator<Item = &str>) {
        (self.exact.keys(), self.wildcard.keys())
    }

    /// Whether any entry is a network: then a name's match may depend on the addresses
    /// it resolves to.
    pub fn has_networks(&self) -> bool {
        self.nets.rule_count() > 0
    }

    /// Whether an address (IPv4-mapped counted as IPv4) lies in a listed network.
    pub fn blocks_addr(&self, ip: IpAddr) -> bool {
        self.nets.contains(ip)
    }

    /// `(exact names, wildcard domains, networks)`, for the startup and reload log.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.exact.len(),
            self.wildcard.len(),
            self.nets.rule_count(),
        )
    }
}

/// One rule as read from a line, before freezing.
#[derive(Debug, PartialEq, Eq)]
enum Rule {
    Exact(String),
    Wildcard(String),
    Net(IpNet),
}

/// Reads a blacklist file's text. `file` names it in error messages. Every bad line
/// is reported, each as `file:line: reason`.
pub fn parse(text: &str, file: &str) -> Result<DestList, FileErrors> {
    let mut builder = DestListBuilder::default();
    let errors = builder.add_text(text, file);
    if !errors.is_empty() {
        return Err(FileErrors(errors));
    }
    Ok(builder.build())
}

/// Destination entries gathered from several places (a policy rule's `dest` list and
/// its `dest_files`), then frozen into one [`DestList`]. Each entry means what a blacklist
/// line means.
#[derive(Debug, Default)]
pub struct DestListBuilder {
    exact: NameTable<EntryId>,
    wildcard: NameTable<EntryId>,
    nets: Vec<(IpNet, EntryId)>,
    sources: Vec<(EntryId, Arc<str>)>,
    /// The id before the next file's first line.
    next_base: EntryId,
}

impl DestListBuilder {
    /// One entry, or a hosts-file line, from no file; the reason when it is not a
    /// valid one.
    pub fn add_line(&mut self, content: &str) -> Result<(), String> {
        self.add(content, UNNAMED)
    }

    /// Adds the line's entries under `id`; an entry listed before keeps its first id.
    fn add(&mut self, content: &str, id: EntryId) -> Result<(), String> {
        let keep_first = |slot: &mut EntryId| {
            if *slot == UNNAMED {
                *slot = id;
            }
        };
        for rule in parse_line(content)? {
            match rule {
                Rule::Exact(name) => keep_first(self.exact.entry(&name)),
                Rule::Wildcard(name) => keep_first(self.wildcard.entry(&name)),
                Rule::Net(net) => self.nets.push((net, id)),
            }
        }
        Ok(())
    }

    /// Every content line of a file's text; the bad ones as `file:line: reason`. The
    /// entries remember their line: ids `base + line`, where `base` is past every id
    /// an earlier file took.
    pub fn add_text(&mut self, text: &str, file: &str) -> Vec<LineError> {
        let base = self.next_base;
        let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
        self.next_base = base.saturating_add(lines).saturating_add(1);
        self.sources.push((base, Arc::from(file)));
        content_lines(text)
            .filter_map(|(line, content)| {
                let id = u32::try_from(line).map_or(UNNAMED, |line| base.saturating_add(line));
                self.add(content, id).err().map(|reason| LineError {
                    file: file.to_string(),
                    line,
                    reason,
                })
            })
            .collect()
    }

    pub fn build(mut self) -> DestList {
        self.exact.shrink_to_fit();
        self.wildcard.shrink_to_fit();
        DestList {
            exact: self.exact,
            wildcard: self.wildcard,
            nets: NetSet::build_named(self.nets),
            sources: Sources(self.sources.into_boxed_slice()),
        }
    }
}

/// Reads and parses a blacklist file. An unreadable file is one whole-file error.
pub fn load(path: &Path) -> Result<DestList, FileErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => Err(FileErrors(vec![LineError {
            file,
            line: WHOLE_FILE,
            reason: format!("cannot read rules file: {e}"),
        }])),
    }
}

/// One content line: a single rule, or a hosts-file line `ADDRESS NAME…` whose
/// names become exact rules (the address is ignored).
fn parse_line(content: &str) -> Result<Vec<Rule>, String> {
    // A rule never contains `#`, so everything from the first one is a comment.
    let content = content.split('#').next().unwrap_or_default();
    let mut fields = content.split_whitespace();
    let Some(first) = fields.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = fields.collect();
    if names.is_empty() {
        return parse_rule(first).map(|rule| vec![rule]);
    }
    if first.parse::<IpAddr>().is_err() {
        return Err(format!(
            "expected one rule per line, found {} fields (hosts-file lines start with an address)",
            names.len() + 1
        ));
    }
    names
        .into_iter()
        .filter(|name| !HOSTS_FILE_SELF_NAMES.contains(&name.to_ascii_lowercase().as_str()))
        .map(|name| match exact_name(name)? {
            Rule::Exact(n) => Ok(Rule::Exact(n)),
            _ => Err(format!("hosts-file entry {name:?} is not a host name")),
        })
        .collect()
}

fn parse_rule(field: &str) -> Result<Rule, String> {
    if field.contains('/') {
        let net: IpNet = field
            .parse()
            .map_err(|_| format!("invalid CIDR network {field:?}"))?;
        if net.trunc() != net {
            return Err(format!(
                "host bits set in {field:?}; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(Rule::Net(net));
    }
    if let Ok(ip) = field.parse::<IpAddr>() {
        return Ok(Rule::Net(IpNet::from(canonical_ip(ip))));
    }
    if let Some(domain) = field.strip_prefix("*.") {
        let domain = canonical_name(domain);
        if domain.is_empty() {
            return Err("'*.' needs a domain after it, as in *.ads.com".into());
        }
        return match name_problem(&domain) {
            None => Ok(Rule::Wildcard(domain)),
            Some(problem) => Err(format!("{problem} in {field:?}")),
        };
    }
    if let Some(domain) = field.strip_prefix('.') {
        return Err(format!(
            "{field:?}: a leading dot is not a rule form; write *{field} for its subdomains \
             and {domain} for the domain itself"
        ));
    }
    exact_name(field)
}

fn exact_name(field: &str) -> Result<Rule, String> {
    if let Ok(ip) = field.parse::<IpAddr>() {
        return Ok(Rule::Net(IpNet::from(canonical_ip(ip))));
    }
    let name = canonical_name(field);
    match name_problem(&name) {
        None => Ok(Rule::Exact(name)),
        Some(problem) => Err(format!("{problem} in {field:?}")),
    }
}

fn canonical_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
