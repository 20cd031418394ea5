//! Reading values out of the parsed TOML tree, each problem noted with the line it is
//! on. The tree keeps every key's and value's byte span (`toml::de::DeTable`), so
//! every problem in a file is reported at once, each as `file:line: reason` — serde's
//! derive stops at the first one, and a policy file with three typos deserves three lines.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::files::LineError;

/// A value in the tree, with its span.
pub type Value<'a> = Spanned<DeValue<'a>>;

/// The problems found in one file so far, and how to turn a span into a line.
pub struct Problems<'t> {
    pub file: String,
    text: &'t str,
    pub errors: Vec<LineError>,
}

impl<'t> Problems<'t> {
    pub fn new(file: String, text: &'t str) -> Problems<'t> {
        Problems {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// The 1-based line a byte offset falls on.
    pub fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// `file:line` of a span.
    pub fn place(&self, span: &Range<usize>) -> String {
        format!("{}:{}", self.file, self.line(span))
    }

    pub fn at(&mut self, span: &Range<usize>, reason: impl Into<String>) {
        self.errors.push(LineError {
            file: self.file.clone(),
            line: self.line(span),
            reason: reason.into(),
        });
    }

    /// The table under `value`, or a problem noted.
    pub fn table<'v, 'a>(&mut self, key: &str, value: &'v Value<'a>) -> Option<&'v DeTable<'a>> {
        let table = value.get_ref().as_table();
        if table.is_none() {
            self.at(&value.span(), format!("`{key}` must be a table"));
        }
        table
    }

    pub fn string<'v>(&mut self, key: &str, value: &'v Value<'_>) -> Option<&'v str> {
        let text = value.get_ref().as_str();
        if text.is_none() {
            let found = value.get_ref().type_str();
            self.at(
                &value.span(),
                format!("`{key}` must be a string, not {found}"),
            );
        }
        text
    }

    /// A whole number from `min` up.
    pub fn integer(&mut self, key: &str, value: &Value<'_>, min: u64) -> Option<u64> {
        let number = value
            .get_ref()
            .as_integer()
            .and_then(|i| u64::from_str_radix(i.as_str(), i.radix()).ok())
            .filter(|n| *n >= min);
        if number.is_none() {
            self.at(
                &value.span(),
                format!("`{key}` must be a whole number of at least {min}"),
            );
        }
        number
    }

    /// Every element of an array of strings (a single string counts as one), each with
    /// its span; elements that are not strings are noted and skipped.
    pub fn strings(&mut self, key: &str, value: &Value<'_>) -> Vec<(String, Range<usize>)> {
        match value.get_ref() {
            DeValue::String(text) => vec![(text.to_string(), value.span())],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::String(text) => Some((text.to_string(), item.span())),
                    DeValue::Integer(number) => Some((number.as_str().to_string(), item.span())),
                    other => {
                        let found = other.type_str();
                        self.at(
                            &item.span(),
                            format!("`{key}` entries must be strings, not {found}"),
                        );
                        None
                    }
                })
                .collect(),
            other => {
                let found = other.type_str();
                self.at(
                    &value.span(),
                    format!("`{key}` must be a list of strings, not {found}"),
                );
                Vec::new()
            }
        }
    }

    /// Notes every key of `table` that is not in `known`.
    pub fn unknown_keys(&mut self, table: &DeTable<'_>, known: &[&str], within: &str) {
        for key in table.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                let name = key.get_ref();
                self.at(
                    &key.span(),
                    format!(
                        "unknown key `{name}` {within} (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}
