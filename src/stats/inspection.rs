//! TLS inspection's figures: leaf certificates signed, leaves served from the cache, and
//! how long signing took. Relaxed atomics like every other counter here; the leaf cache
//! (`inspect::Leaves`) counts, `/metrics` and `/stats` read an [`InspectionSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{DurationHistogram, HistogramSnapshot};

#[derive(Debug, Default)]
pub struct InspectionCounters {
    leaves_generated: AtomicU64,
    leaves_cached: AtomicU64,
    leaf_durations: DurationHistogram,
}

/// Inspection's figures at one moment (`/stats` → `inspection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectionSnapshot {
    /// Leaf certificates signed.
    pub leaves_generated: u64,
    /// Leaves served from the cache.
    pub leaves_cached: u64,
    /// How long making a leaf took (key generation and signature).
    pub leaf_durations: HistogramSnapshot,
}

impl InspectionCounters {
    /// A leaf was signed, which took `took`.
    pub fn leaf_generated(&self, took: Duration) {
        self.leaves_generated.fetch_add(1, Ordering::Relaxed);
        self.leaf_durations.record(took);
    }

    /// A leaf was served from the cache.
    pub fn leaf_cached(&self) {
        self.leaves_cached.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> InspectionSnapshot {
        InspectionSnapshot {
            leaves_generated: self.leaves_generated.load(Ordering::Relaxed),
            leaves_cached: self.leaves_cached.load(Ordering::Relaxed),
            leaf_durations: self.leaf_durations.snapshot(),
        }
    }
}
