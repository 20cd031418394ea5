//! Decisions per access-policy rule: how many requests each rule allowed, refused or
//! sent back for credentials, for `/metrics`. Rules are named by the policy (a reload
//! may bring new names; old ones keep their counts), so the table is a map behind a
//! mutex rather than fixed atomics: it is held only for one lookup and increment, never
//! across I/O, and a lookup by `&str` allocates nothing once a rule has been seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// What a rule did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Deny,
    AuthRequired,
}

impl RuleAction {
    pub const ALL: [RuleAction; 3] = [
        RuleAction::Allow,
        RuleAction::Deny,
        RuleAction::AuthRequired,
    ];

    /// The `action` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::AuthRequired => "auth_required",
        }
    }

    fn index(self) -> usize {
        match self {
            RuleAction::Allow => 0,
            RuleAction::Deny => 1,
            RuleAction::AuthRequired => 2,
        }
    }
}

/// Counts per rule and action.
#[derive(Debug, Default)]
pub struct RuleCounts {
    counts: Mutex<HashMap<Arc<str>, [u64; 3]>>,
}

impl RuleCounts {
    pub fn count(&self, rule: &Arc<str>, action: RuleAction) {
        // A panic elsewhere cannot leave a half-written count: keep counting.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts.get_mut(rule.as_ref()) {
            Some(row) => row[action.index()] += 1,
            None => {
                let mut row = [0; 3];
                row[action.index()] = 1;
                counts.insert(Arc::clone(rule), row);
            }
        }
    }

    /// `(rule, action, count)` for every count above zero, sorted by rule.
    pub fn snapshot(&self) -> Vec<(Arc<str>, RuleAction, u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<(Arc<str>, RuleAction, u64)> = counts
            .iter()
            .flat_map(|(rule, row)| {
                RuleAction::ALL
                    .into_iter()
                    .filter(|action| row[action.index()] > 0)
                    .map(|action| (Arc::clone(rule), action, row[action.index()]))
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1.index()).cmp(&(&b.0, b.1.index())));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_rule_and_action() {
        let counts = RuleCounts::default();
        let ads: Arc<str> = "no ads".into();
        let staff: Arc<str> = "staff".into();
        counts.count(&staff, RuleAction::Allow);
        counts.count(&ads, RuleAction::Deny);
        counts.count(&staff, RuleAction::Allow);
        counts.count(&ads, RuleAction::Deny);
        counts.count(&staff, RuleAction::AuthRequired);
        let rows: Vec<(String, &str, u64)> = counts
            .snapshot()
            .into_iter()
            .map(|(rule, action, n)| (rule.to_string(), action.label(), n))
            .collect();
        assert_eq!(
            rows,
            [
                ("no ads".to_string(), "deny", 2),
                ("staff".to_string(), "allow", 2),
                ("staff".to_string(), "auth_required", 1),
            ]
        );
    }
}
