//! `--name value` flags for the tools; every flag takes exactly one value.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::str::FromStr;

pub struct Flags(HashMap<String, String>);

impl Flags {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Flags> {
        let mut map = HashMap::new();
        while let Some(name) = argv.next() {
            let Some(key) = name.strip_prefix("--") else {
                bail!("expected --flag, got {name:?}");
            };
            let value = argv
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            map.insert(key.to_string(), value);
        }
        Ok(Flags(map))
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn get<T: FromStr>(&self, key: &str, default: Option<T>) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("--{key} {text:?}: {e}")),
            None => default.with_context(|| format!("--{key} is required")),
        }
    }
}
