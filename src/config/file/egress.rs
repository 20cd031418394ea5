//! `[[parents]]`, `[[routes]]` and `[headers]`: named parent proxies (each URL read by
//! the upstream module's own parser, a `ca_file` resolved against the file's folder),
//! ordered routes whose `dest` entries mean what blacklist lines mean (`"*"`: every
//! destination) and whose `via` names `"direct"` or parents, and the header lists. Every
//! problem at its line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::de::DeTable;

use super::relative_to;
use super::values::{Problems, Value};
use crate::acl::DestListBuilder;
use crate::http::Header;
use crate::http::edits::{field, field_name};
use crate::upstream::{Hop, Parent, RouteRule};

const PARENT_KEYS: [&str; 3] = ["name", "url", "ca_file"];
const ROUTE_KEYS: [&str; 2] = ["dest", "via"];
const HEADER_KEYS: [&str; 4] = [
    "request_add",
    "request_remove",
    "response_add",
    "response_remove",
];

/// What the file says about egress.
#[derive(Debug, Default)]
pub struct FileEgress {
    pub parents: Vec<Arc<Parent>>,
    /// Hops name parents by their index in `parents`.
    pub routes: Vec<RouteRule>,
    pub request_remove: Vec<Box<str>>,
    pub request_add: Vec<Header>,
    pub response_remove: Vec<Box<str>>,
    pub response_add: Vec<Header>,
}

pub fn read(root: &DeTable<'_>, folder: &Path, problems: &mut Problems<'_>) -> FileEgress {
    let mut egress = FileEgress::default();
    let mut names = HashMap::new();
    for (table, header) in entries(root, "parents", problems) {
        if let Some(parent) = read_parent(table, &header, folder, problems) {
            if names.contains_key(parent.name.as_ref()) {
                problems.at(
                    &header,
                    format!("parent {:?} is defined twice", parent.name),
                );
                continue;
            }
            names.insert(parent.name.to_string(), egress.parents.len());
            egress.parents.push(Arc::new(parent));
        }
    }
    for (table, header) in entries(root, "routes", problems) {
        if let Some(route) = read_route(table, &header, &names, problems) {
            egress.routes.push(route);
        }
    }
    if let Some(value) = root.get("headers")
        && let Some(table) = problems.table("headers", value)
    {
        problems.unknown_keys(table, &HEADER_KEYS, "in [headers]");
        let list = |key: &str, problems: &mut Problems<'_>| {
            table
                .get(key)
                .map(|v| problems.strings(key, v))
                .unwrap_or_default()
        };
        let names = |items: Vec<(String, std::ops::Range<usize>)>, problems: &mut Problems<'_>| {
            parse_each(items, problems, "header name", field_name)
        };
        let fields =
            |items, problems: &mut Problems<'_>| parse_each(items, problems, "header", field);
        let items = list("request_remove", problems);
        egress.request_remove = names(items, problems);
        let items = list("request_add", problems);
        egress.request_add = fields(items, problems);
        let items = list("response_remove", problems);
        egress.response_remove = names(items, problems);
        let items = list("response_add", problems);
        egress.response_add = fields(items, problems);
    }
    egress
}

/// The tables of an array of tables (`[[key]]`), each with its span.
fn entries<'v, 'a>(
    root: &'v DeTable<'a>,
    key: &str,
    problems: &mut Problems<'_>,
) -> Vec<(&'v DeTable<'a>, std::ops::Range<usize>)> {
    let Some(value) = root.get(key) else {
        return Vec::new();
    };
    let Some(items) = value.get_ref().as_array() else {
        problems.at(
            &value.span(),
            format!("`{key}` must be an array of tables ([[{key}]])"),
        );
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| problems.table(key, item).map(|table| (table, item.span())))
        .collect()
}

fn read_parent(
    table: &DeTable<'_>,
    header: &std::ops::Range<usize>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<Parent> {
    problems.unknown_keys(table, &PARENT_KEYS, "in a parent");
    let text = |key: &str, problems: &mut Problems<'_>| match table.get(key) {
        Some(value) => problems
            .string(key, value)
            .map(|s| (s.to_string(), value.span())),
        None => None,
    };
    let name = text("name", problems);
    let url = text("url", problems);
    let ca_file = text("ca_file", problems).map(|(path, _)| relative_to(folder, &path));
    let (Some((name, name_span)), Some((url, url_span))) = (name, url) else {
        problems.at(header, "a parent needs a `name` and a `url`");
        return None;
    };
    if name == "direct" || name.is_empty() {
        problems.at(&name_span, format!("{name:?} cannot name a parent"));
        return None;
    }
    let tls = || crate::tls::client_config(ca_file.as_deref());
    match Parent::new(name.into(), &url, tls) {
        Ok(parent) => Some(parent),
        Err(reason) => {
            // The URL may carry a password: the reason names the URL only by its line.
            let reason = reason.replace(&url, "the url");
            problems.at(&url_span, format!("parent `url`: {reason}"));
            None
        }
    }
}

fn read_route(
    table: &DeTable<'_>,
    header: &std::ops::Range<usize>,
    parents: &HashMap<String, usize>,
    problems: &mut Problems<'_>,
) -> Option<RouteRule> {
    problems.unknown_keys(table, &ROUTE_KEYS, "in a route");
    let (dest, written) = match table.get("dest") {
        None => (None, Vec::new()),
        Some(value) => dest(value, problems),
    };
    let Some(via) = table.get("via") else {
        problems.at(header, "a route needs `via` (\"direct\" or parent names)");
        return None;
    };
    let mut hops = Vec::new();
    let names = problems.strings("via", via);
    let listed = names.len();
    for (name, span) in names {
        match (name.as_str(), parents.get(&name)) {
            ("direct", _) => hops.push(Hop::Direct),
            (_, Some(index)) => hops.push(Hop::Parent(*index)),
            (_, None) => problems.at(
                &span,
                format!("unknown parent {name:?} in `via` (define it in [[parents]] first)"),
            ),
        }
    }
    if hops.is_empty() {
        if listed == 0 {
            problems.at(&via.span(), "`via` names no hop");
        }
        return None;
    }
    Some(RouteRule {
        dest,
        written,
        hops,
    })
}

/// `dest` entries as blacklist lines; `"*"` (anywhere in the list) matches everything.
/// Also the entries as written.
fn dest(
    value: &Value<'_>,
    problems: &mut Problems<'_>,
) -> (Option<crate::acl::DestList>, Vec<String>) {
    let entries = problems.strings("dest", value);
    let written = entries.iter().map(|(entry, _)| entry.clone()).collect();
    if entries.iter().any(|(entry, _)| entry == "*") {
        return (None, written);
    }
    let mut builder = DestListBuilder::default();
    for (entry, span) in entries {
        if let Err(reason) = builder.add_line(&entry) {
            problems.at(&span, format!("`dest`: {reason}"));
        }
    }
    (Some(builder.build()), written)
}

fn parse_each<T>(
    items: Vec<(String, std::ops::Range<usize>)>,
    problems: &mut Problems<'_>,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|(item, span)| match parse(&item) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                problems.at(&span, format!("{what}: {reason}"));
                None
            }
        })
        .collect()
}
