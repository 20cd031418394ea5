//! The flag tables in README.md and docs/configuration.md must list exactly the flags
//! `proxy-server --help` lists, with the same defaults.
//!
//! A table counts when its header row starts with `| flag | default |`. In the default
//! column, a value in backticks is the literal default and must equal what `--help` shows
//! as `[default: …]`; plain words (`off`, `none`, `any client`) mean `--help` shows no
//! default for that flag.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Flags every clap command has; they are not configuration.
const BUILT_IN: [&str; 2] = ["--help", "--version"];

/// What a source says about one flag's default: `Some(value)` for a literal default,
/// `None` for none.
type Defaults = BTreeMap<String, Option<String>>;

#[test]
fn readme_flag_table_matches_help() {
    check_doc("README.md");
}

#[test]
fn configuration_flag_table_matches_help() {
    check_doc("docs/configuration.md");
}

/// The checks themselves must be able to fail: a wrong default, a missing flag and an
/// extra flag are each reported by name.
#[test]
fn differences_are_reported_by_flag() {
    let help = help_defaults();
    let mut doc = help.clone();
    doc.insert("--port".into(), Some("9999".into()));
    doc.remove("--cache");
    doc.insert("--no-such-flag".into(), None);
    let report = differences(&help, &doc).join("\n");
    for flag in ["--port", "--cache", "--no-such-flag"] {
        assert!(report.contains(flag), "{flag} not reported in:\n{report}");
    }
    assert_eq!(differences(&help, &help), Vec::<String>::new());
}

fn check_doc(relative: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let doc = table_defaults(&text);
    assert!(
        !doc.is_empty(),
        "{relative}: no `| flag | default |` table found"
    );
    let problems = differences(&help_defaults(), &doc);
    assert!(
        problems.is_empty(),
        "{relative}'s flag table disagrees with `proxy-server --help`:\n  {}",
        problems.join("\n  ")
    );
}

/// Every disagreement between `--help` and a doc table, one readable line each.
fn differences(help: &Defaults, doc: &Defaults) -> Vec<String> {
    let show = |default: &Option<String>| match default {
        Some(value) => format!("`{value}`"),
        None => "no default".to_string(),
    };
    let mut problems = Vec::new();
    for (flag, help_default) in help {
        match doc.get(flag) {
            None => problems.push(format!("{flag}: in --help, missing from the table")),
            Some(doc_default) if doc_default != help_default => problems.push(format!(
                "{flag}: --help says {}, the table says {}",
                show(help_default),
                show(doc_default)
            )),
            Some(_) => {}
        }
    }
    for flag in doc.keys().filter(|flag| !help.contains_key(*flag)) {
        problems.push(format!("{flag}: in the table, not in --help"));
    }
    problems
}

/// The long help (`--help`) and the summary (`-h`) are laid out differently but must
/// give the same flags and defaults: this keeps the parser honest about both layouts.
#[test]
fn long_and_short_help_agree() {
    assert_eq!(help_defaults_from("--help"), help_defaults_from("-h"));
}

/// Runs the built binary's `--help` and reads each long flag and its `[default: …]`.
fn help_defaults() -> Defaults {
    help_defaults_from("--help")
}

fn help_defaults_from(help_flag: &str) -> Defaults {
    let output = Command::new(env!("CARGO_BIN_EXE_proxy-server"))
        .arg(help_flag)
        // Keeps any terminal-width wrapping out of the way; entries are joined anyway.
        .env("COLUMNS", "1000")
        .output()
        .expect("run proxy-server");
    assert!(output.status.success(), "proxy-server {help_flag} failed");
    let text = String::from_utf8(output.stdout).expect("--help prints UTF-8");
    let defaults = parse_help(&text);
    assert!(
        defaults.contains_key("--port"),
        "no flags found in {help_flag}:\n{text}"
    );
    defaults
}

/// Splits the help into one entry per option: a line starting with `-` (indented by at
/// most 6 columns; descriptions are indented further), plus the indented lines under it,
/// joined so a wrapped `[default: …]` is found whole. Blank lines are skipped: the long
/// form separates paragraphs of one option's help with them.
fn parse_help(text: &str) -> Defaults {
    let mut entries: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('-') && (1..=6).contains(&indent) {
            entries.push(trimmed.to_string());
        } else if let Some(entry) = entries.last_mut().filter(|_| indent > 0) {
            entry.push(' ');
            entry.push_str(trimmed);
        } else {
            // A heading such as `Options:` ends the entry.
            entries.push(String::new());
        }
    }
    let mut defaults = Defaults::new();
    for entry in entries {
        let Some(flag) = long_flag(&entry) else {
            continue;
        };
        if BUILT_IN.contains(&flag.as_str()) {
            continue;
        }
        let default = entry.split("[default: ").nth(1).map(|rest| {
            let end = rest.find(']').unwrap_or(rest.len());
            rest[..end].trim().to_string()
        });
        defaults.insert(flag, default);
    }
    defaults
}

/// The first `--name` in `text`.
fn long_flag(text: &str) -> Option<String> {
    let start = text.find("--")?;
    let name: String = text[start + 2..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then(|| format!("--{name}"))
}

/// Reads every `| flag | default | … |` table in a markdown text.
fn table_defaults(text: &str) -> Defaults {
    let mut defaults = Defaults::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        let header = |i: usize| cells.get(i).map(|c| c.to_ascii_lowercase());
        if header(0).as_deref() == Some("flag") && header(1).as_deref() == Some("default") {
            in_table = true;
            continue;
        }
        if !in_table || cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch))) {
            continue;
        }
        let flag = long_flag(&cells[0])
            .unwrap_or_else(|| panic!("flag table row without a --flag: {line}"));
        let cell = cells.get(1).map(String::as_str).unwrap_or("");
        let default = match cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            Some(value) => Some(value.to_string()),
            None => {
                assert!(
                    !cell.contains('`'),
                    "{flag}: default cell {cell:?} must be one `value` or plain words"
                );
                None
            }
        };
        assert!(
            defaults.insert(flag.clone(), default).is_none(),
            "{flag} appears twice in a flag table"
        );
    }
    defaults
}

/// A table row's cells, trimmed; `\|` is a literal bar, not a separator.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}
