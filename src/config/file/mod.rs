//! The configuration file (`--config FILE`, TOML): flag keys — every command-line flag
//! has a key of the same name with `_` for `-` — and the access policy: `default`,
//! `[groups]`, the ordered `[[rules]]` and `[limits]`; and `[inspection]`, the CA. This module reads the file and
//! every file it names (`dest_files`), resolves relative paths against the file's
//! folder, and reports every problem as `file:line: reason`. It knows nothing of clap:
//! `cli` says which flag keys exist and checks their values the way the flags are checked.

mod egress;
mod inspection;
mod limits;
mod listen;
mod rules;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use crate::acl::{Action, RuleBook};
use crate::files::{FileErrors, LineError, WHOLE_FILE};
use crate::limits::LimitSettings;
pub use listen::FileListener;
use values::Problems;

/// Top-level keys that are listeners, policy or egress, not flags.
const POLICY_KEYS: [&str; 9] = [
    "listen",
    "default",
    "groups",
    "rules",
    "limits",
    "parents",
    "routes",
    "headers",
    "inspection",
];

pub use egress::FileEgress;

/// A flag as the file may set it.
#[derive(Debug, Clone)]
pub struct FlagKey {
    /// The flag's name with `_` for `-` (`auth_file`).
    pub key: String,
    /// Whether the flag takes a value (else it is a switch: `cache = true`).
    pub takes_value: bool,
    /// Whether the value is a path (resolved against the file's folder).
    pub is_path: bool,
}

/// A flag's value from the file, as command-line text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSetting {
    pub key: String,
    /// `None`: a switch set to `false` (the flag is left out).
    pub value: Option<String>,
    pub switch: bool,
    pub line: usize,
}

/// What a configuration file says.
#[derive(Debug)]
pub struct FileSettings {
    pub flags: Vec<FlagSetting>,
    /// `[[listen]]` tables, in order.
    pub listeners: Vec<FileListener>,
    pub rules: RuleBook,
    pub limits: LimitSettings,
    pub egress: FileEgress,
    /// `[inspection]`, loaded.
    pub inspection: Option<Arc<crate::inspect::Inspection>>,
}

/// Reads `path`; `flags` are the flag keys the file may set. Returns what could be
/// read and every problem found (the caller adds the flag values' own problems).
pub fn read(path: &Path, flags: &[FlagKey]) -> Result<(FileSettings, Vec<LineError>), FileErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        FileErrors(vec![LineError {
            file: file.clone(),
            line: WHOLE_FILE,
            reason: format!("cannot read configuration file: {error}"),
        }])
    })?;
    let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok(parse(&text, &file, &folder, flags))
}

/// Reads a configuration file's text; `file` names it in errors, `folder` is where its
/// relative paths start.
pub fn parse(
    text: &str,
    file: &str,
    folder: &Path,
    flags: &[FlagKey],
) -> (FileSettings, Vec<LineError>) {
    let mut problems = Problems::new(file.to_string(), text);
    let mut settings = FileSettings {
        flags: Vec::new(),
        listeners: Vec::new(),
        rules: RuleBook::default(),
        limits: LimitSettings::default(),
        egress: FileEgress::default(),
        inspection: None,
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            problems.at(&span, error.message().trim().to_string());
            return (settings, problems.errors);
        }
    };
    let root = root.get_ref();
    for (key, value) in root {
        let name = key.get_ref().as_ref();
        if POLICY_KEYS.contains(&name) {
            continue;
        }
        match flags.iter().find(|flag| flag.key == name) {
            Some(flag) => {
                if let Some(setting) = flag_setting(flag, value, folder, &mut problems) {
                    settings.flags.push(setting);
                }
            }
            None => problems.at(
                &key.span(),
                format!(
                    "unknown key `{name}` (not a flag, nor listen, default, groups, rules, \
                     limits, parents, routes, headers or inspection)"
                ),
            ),
        }
    }
    if let Some(value) = root.get("limits")
        && let Some(table) = problems.table("limits", value)
    {
        settings.limits = limits::read(table, limits::Scope::Everyone, &mut problems);
    }
    settings.listeners = listen::read(root, folder, &mut problems);
    let default = read_default(root, &mut problems);
    settings.inspection = inspection::read(root, folder, &mut problems);
    let inspection = root.get("inspection").is_some();
    let book_rules = rules::read(root, folder, inspection, &mut problems);
    settings.rules = RuleBook::new(book_rules, default.0, Some(default.1));
    settings.egress = egress::read(root, folder, &mut problems);
    (settings, problems.errors)
}

/// `default = "allow" | "deny"` and how logs name it.
fn read_default(root: &DeTable<'_>, problems: &mut Problems<'_>) -> (Action, Arc<str>) {
    let Some(value) = root.get("default") else {
        return (Action::Allow, "default allow (no rule matched)".into());
    };
    let place = problems.place(&value.span());
    let action = match problems.string("default", value) {
        Some("allow") => Action::Allow,
        Some("deny") => Action::Deny,
        Some(other) => {
            problems.at(
                &value.span(),
                format!("`default` must be \"allow\" or \"deny\", not {other:?}"),
            );
            Action::Allow
        }
        None => Action::Allow,
    };
    (
        action,
        format!("default {} ({place})", action.label()).into(),
    )
}

/// One flag key's value as command-line text.
fn flag_setting(
    flag: &FlagKey,
    value: &values::Value<'_>,
    folder: &Path,
    problems: &mut Problems<'_>,
) -> Option<FlagSetting> {
    let line = problems.line(&value.span());
    let key = flag.key.clone();
    if !flag.takes_value {
        let Some(on) = value.get_ref().as_bool() else {
            problems.at(&value.span(), format!("`{key}` must be true or false"));
            return None;
        };
        let value = on.then(String::new);
        return Some(FlagSetting {
            key,
            value,
            switch: true,
            line,
        });
    }
    let text = match value.get_ref() {
        toml::de::DeValue::Boolean(_) => {
            problems.at(
                &value.span(),
                format!("`{key}` takes a value, not true or false"),
            );
            return None;
        }
        toml::de::DeValue::String(text) => text.to_string(),
        toml::de::DeValue::Integer(number) => number.as_str().to_string(),
        toml::de::DeValue::Array(_) => {
            let items = problems.strings(&key, value);
            items
                .into_iter()
                .map(|(item, _)| item)
                .collect::<Vec<_>>()
                .join(",")
        }
        other => {
            let found = other.type_str();
            problems.at(
                &value.span(),
                format!("`{key}` must be a string, number or list, not {found}"),
            );
            return None;
        }
    };
    let text = if flag.is_path {
        relative_to(folder, &text).display().to_string()
    } else {
        text
    };
    Some(FlagSetting {
        key,
        value: Some(text),
        switch: false,
        line,
    })
}

/// A path from the file: relative ones start at the file's folder.
pub fn relative_to(folder: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        folder.join(path)
    }
}

#[cfg(test)]
mod tests;
