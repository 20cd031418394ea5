//! `[limits]` and a rule's `limits = { … }`: the policy file's spelling of
//! [`LimitSettings`] — whole numbers, a bandwidth with an optional unit (`"10MiB"`), the
//! authentication keys only where they make sense (everyone's table: authentication
//! happens before any rule is asked).

use std::time::Duration;

use toml::de::DeTable;

use super::values::Problems;
use crate::limits::LimitSettings;

const RULE_KEYS: [&str; 3] = ["requests_per_second", "connections", "bandwidth"];
const ALL_KEYS: [&str; 6] = [
    "requests_per_second",
    "connections",
    "bandwidth",
    "auth_failures_per_minute",
    "auth_block_seconds",
    "auth_failures_per_minute_total",
];

/// Which table is being read: everyone's, or one rule's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everyone,
    Rule,
}

/// Reads one limits table; problems are noted in `problems`.
pub fn read(table: &DeTable<'_>, scope: Scope, problems: &mut Problems<'_>) -> LimitSettings {
    let known: &[&str] = match scope {
        Scope::Everyone => &ALL_KEYS,
        Scope::Rule => &RULE_KEYS,
    };
    let within = match scope {
        Scope::Everyone => "in [limits]",
        Scope::Rule => "in a rule's limits (authentication limits belong in [limits])",
    };
    problems.unknown_keys(table, known, within);
    let mut limits = LimitSettings::default();
    for (key, value) in table {
        let key = key.get_ref().as_ref();
        let whole = |problems: &mut Problems<'_>| {
            problems
                .integer(key, value, 1)
                .and_then(|n| u32::try_from(n).ok())
        };
        match key {
            "requests_per_second" => limits.requests_per_second = whole(problems),
            "connections" => limits.connections = whole(problems),
            "auth_failures_per_minute" if scope == Scope::Everyone => {
                limits.auth_failures_per_minute = whole(problems);
            }
            "auth_failures_per_minute_total" if scope == Scope::Everyone => {
                limits.auth_failures_per_minute_total = whole(problems);
            }
            "auth_block_seconds" if scope == Scope::Everyone => {
                if let Some(secs) = problems.integer(key, value, 1) {
                    limits.auth_block = Duration::from_secs(secs);
                }
            }
            "bandwidth" => {
                let parsed = match value.get_ref().as_str() {
                    Some(text) => parse_bandwidth(text),
                    None => problems.integer(key, value, 1).ok_or_else(String::new),
                };
                match parsed {
                    Ok(bytes) => limits.bandwidth = Some(bytes),
                    Err(reason) if !reason.is_empty() => problems.at(&value.span(), reason),
                    Err(_) => {}
                }
            }
            _ => {}
        }
    }
    limits
}

/// Bytes per second: a whole number with an optional unit — `B`, decimal `KB` `MB`
/// `GB`, or binary `KiB` `MiB` `GiB` (as in `"10MiB"`).
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad =
        || format!("bandwidth {text:?}: expected bytes per second such as \"10MiB\" or \"500KB\"");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    match number.checked_mul(scale) {
        Some(0) => Err(format!("bandwidth {text:?} must be more than 0")),
        Some(bytes) => Ok(bytes),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_units() {
        assert_eq!(parse_bandwidth("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bandwidth("500KB"), Ok(500_000));
        assert_eq!(parse_bandwidth("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bandwidth("2048"), Ok(2048));
        for bad in ["", "MiB", "10 mib", "1.5MiB", "0", "99999999999GiB"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad:?}");
        }
    }
}
