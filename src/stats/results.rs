//! The dashboard's words for how requests ended: four results, each a fixed sum of the
//! access log's outcomes, used alike by the page's cards and charts, `/stats/series` and
//! `/stats/top` (and docs/observability.md). The outcomes stay as they are in the access
//! log, `/stats` and Prometheus; this is their grouping for a person:
//!
//! | result | outcomes | answers |
//! | --- | --- | --- |
//! | `allowed` | `allowed`, `tunnel` | forwarded, served from the cache, or tunnelled |
//! | `denied` ("denied by policy") | `blocked` | 403 from the policy or blacklist, 429 from a limit |
//! | `login_required` | `auth_failed` | 407: no or wrong credentials |
//! | `errors` | `malformed`, `upstream_error` | 400-class refusals of bad requests, 502/504 |

use serde::Serialize;

use super::RequestCounts;

/// One value per result: counts, or rates per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Results<T> {
    pub allowed: T,
    pub denied: T,
    pub login_required: T,
    pub errors: T,
}

impl Results<u64> {
    /// The results that `counts` add up to.
    pub fn of(counts: &RequestCounts) -> Results<u64> {
        Results {
            allowed: counts.allowed.saturating_add(counts.tunnel),
            denied: counts.blocked,
            login_required: counts.auth_failed,
            errors: counts.malformed.saturating_add(counts.upstream_error),
        }
    }

    /// Each result's growth from `before` to `self`, through `f`.
    pub fn since<U>(&self, before: &Results<u64>, f: impl Fn(u64) -> U) -> Results<U> {
        Results {
            allowed: f(self.allowed.saturating_sub(before.allowed)),
            denied: f(self.denied.saturating_sub(before.denied)),
            login_required: f(self.login_required.saturating_sub(before.login_required)),
            errors: f(self.errors.saturating_sub(before.errors)),
        }
    }

    /// All four together: every finished request and tunnel.
    pub fn total(&self) -> u64 {
        self.allowed + self.denied + self.login_required + self.errors
    }
}

impl Eq for Results<u64> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_falls_in_exactly_one_result() {
        let counts = RequestCounts {
            allowed: 1,
            blocked: 20,
            auth_failed: 300,
            malformed: 4000,
            upstream_error: 50_000,
            tunnel: 600_000,
        };
        let results = Results::of(&counts);
        assert_eq!(
            results,
            Results {
                allowed: 600_001,
                denied: 20,
                login_required: 300,
                errors: 54_000,
            }
        );
        assert_eq!(results.total(), counts.total());
    }
}
