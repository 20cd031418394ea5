//! `[groups]` and `[[rules]]`: each rule entry read into an [`acl::Rule`], its lists
//! parsed with the same code the flags and the blacklist use (so `dest` entries mean
//! exactly what blacklist lines mean), groups expanded, every problem at its line.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use toml::de::DeTable;

use super::limits::{self, Scope};
use super::relative_to;
use super::values::{Problems, Value};
use crate::acl::{Action, DestListBuilder, NetSet, PortSet, Rule, Window, parse_client_net};

const RULE_KEYS: [&str; 10] = [
    "name",
    "action",
    "users",
    "clients",
    "dest",
    "dest_files",
    "ports",
    "methods",
    "hours",
    "limits",
];

/// Group name → its users.
type Groups = HashMap<String, Vec<String>>;

/// Every rule of the file, in order; problems noted in `problems`.
pub fn read(root: &DeTable<'_>, folder: &Path, problems: &mut Problems<'_>) -> Vec<Rule> {
    let groups = read_groups(root, problems);
    let Some(value) = root.get("rules") else {
        return Vec::new();
    };
    let Some(entries) = value.get_ref().as_array() else {
        problems.at(
            &value.span(),
            "`rules` must be an array of tables ([[rules]])",
        );
        return Vec::new();
    };
    let mut rules = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Some(table) = problems.table("rules", entry) else {
            continue;
        };
        let header = entry.span();
        rules.push(read_rule(
            table,
            index + 1,
            &header,
            &groups,
            folder,
            problems,
        ));
    }
    rules
}

fn read_groups(root: &DeTable<'_>, problems: &mut Problems<'_>) -> Groups {
    let mut groups = Groups::new();
    let Some(value) = root.get("groups") else {
        return groups;
    };
    let Some(table) = problems.table("groups", value) else {
        return groups;
    };
    for (name, members) in table {
        let members = problems.strings(name.get_ref(), members);
        for (member, span) in &members {
            if member.starts_with('@') {
                problems.at(
                    span,
                    format!("{member:?}: groups list users, not other groups"),
                );
            }
        }
        let names = members.into_iter().map(|(member, _)| member).collect();
        groups.insert(name.get_ref().to_string(), names);
    }
    groups
}

fn read_rule(
    table: &DeTable<'_>,
    number: usize,
    header: &std::ops::Range<usize>,
    groups: &Groups,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Rule {
    problems.unknown_keys(table, &RULE_KEYS, "in a rule");
    let line = problems.line(header);
    let name = table
        .get("name")
        .and_then(|value| problems.string("name", value))
        .map(str::to_string);
    let mut rule = Rule {
        label: Rule::make_label(name.as_deref(), number, &problems.file, line),
        name,
        number,
        file: problems.file.clone(),
        line,
        action: read_action(table, number, header, problems),
        ..Rule::default()
    };
    if let Some(value) = table.get("users") {
        rule.users = Some(users(value, groups, problems));
    }
    if let Some(value) = table.get("clients") {
        let nets = parsed(problems, "clients", value, parse_client_net);
        rule.clients = Some(NetSet::build(&nets));
    }
    rule.dest = dest(table, folder, problems);
    if let Some(value) = table.get("ports") {
        rule.ports = ports(value, problems);
    }
    if let Some(value) = table.get("methods") {
        rule.methods = Some(parsed(problems, "methods", value, method));
    }
    if let Some(value) = table.get("hours") {
        rule.hours = Some(parsed(problems, "hours", value, |text| {
            text.parse::<Window>()
        }));
    }
    if let Some(value) = table.get("limits")
        && let Some(limits) = problems.table("limits", value)
    {
        rule.limits = Some(Arc::new(limits::read(limits, Scope::Rule, problems)));
    }
    rule
}

/// `action = "allow" | "deny"`, required; a missing or bad one is noted (and the rule
/// kept as a deny, so a broken file never allows more than it meant to).
fn read_action(
    table: &DeTable<'_>,
    number: usize,
    header: &std::ops::Range<usize>,
    problems: &mut Problems<'_>,
) -> Action {
    let Some(value) = table.get("action") else {
        let reason = format!("rule {number} has no `action` (\"allow\" or \"deny\")");
        problems.at(header, reason);
        return Action::Deny;
    };
    match problems.string("action", value) {
        Some("allow") => Action::Allow,
        Some("deny") => Action::Deny,
        Some(other) => {
            let reason = format!("`action` must be \"allow\" or \"deny\", not {other:?}");
            problems.at(&value.span(), reason);
            Action::Deny
        }
        None => Action::Deny,
    }
}

/// `ports = ["443", 80, "8000-9000"]`, read as one `--connect-ports` list.
fn ports(value: &Value<'_>, problems: &mut Problems<'_>) -> Option<PortSet> {
    let items = problems.strings("ports", value);
    let list: Vec<&str> = items.iter().map(|(item, _)| item.as_str()).collect();
    match list.join(",").parse::<PortSet>() {
        Ok(ports) => Some(ports),
        Err(reason) => {
            problems.at(&value.span(), format!("`ports`: {reason}"));
            None
        }
    }
}

/// Each string of a list through `parse`; the bad ones noted at their own line.
fn parsed<T>(
    problems: &mut Problems<'_>,
    key: &str,
    value: &Value<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let items = problems.strings(key, value);
    items
        .into_iter()
        .filter_map(|(item, span)| match parse(&item) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                problems.at(&span, format!("`{key}`: {reason}"));
                None
            }
        })
        .collect()
}

fn users(value: &Value<'_>, groups: &Groups, problems: &mut Problems<'_>) -> HashSet<Box<str>> {
    let mut users = HashSet::new();
    for (entry, span) in problems.strings("users", value) {
        match entry.strip_prefix('@') {
            Some(group) => match groups.get(group) {
                Some(members) => users.extend(members.iter().map(|m| Box::from(m.as_str()))),
                None => problems.at(
                    &span,
                    format!("unknown group {entry:?} (define it in [groups])"),
                ),
            },
            None => {
                users.insert(entry.into_boxed_str());
            }
        }
    }
    users
}

/// `dest` entries and every line of the `dest_files`, frozen into one lookup set.
fn dest(
    table: &DeTable<'_>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<crate::acl::DestList> {
    if table.get("dest").is_none() && table.get("dest_files").is_none() {
        return None;
    }
    let mut builder = DestListBuilder::default();
    if let Some(value) = table.get("dest") {
        for (entry, span) in problems.strings("dest", value) {
            if let Err(reason) = builder.add_line(&entry) {
                problems.at(&span, format!("`dest`: {reason}"));
            }
        }
    }
    if let Some(value) = table.get("dest_files") {
        for (entry, span) in problems.strings("dest_files", value) {
            let path = relative_to(folder, &entry);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let errors = builder.add_text(&text, &path.display().to_string());
                    problems.errors.extend(errors);
                }
                Err(error) => {
                    problems.at(&span, format!("cannot read {}: {error}", path.display()))
                }
            }
        }
    }
    Some(builder.build())
}

/// A request method as RFC 9110 §9.1 spells it: a token, compared case-sensitively, so
/// a lower-case name in the file would silently never match.
fn method(text: &str) -> Result<Box<str>, String> {
    let token = !text.is_empty() && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    if token {
        Ok(text.into())
    } else {
        Err(format!(
            "{text:?} is not a method name in capitals (GET, CONNECT, …)"
        ))
    }
}
