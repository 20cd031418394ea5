//! Whether this instance wants traffic: starting (listeners not yet bound or the policy
//! not yet loaded), ready, or draining (SIGTERM or a handover began). The server side sets
//! it; the metrics listener's `/readyz` reads it, so a load balancer's health check stops
//! sending new connections before the listeners close. A leaf: it knows nothing of
//! sockets or signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// One instance's readiness, shared by cheap clones.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicU8>);

/// The states in the order an instance goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Starting,
    Ready,
    Draining,
}

impl Health {
    /// Listeners bound and the policy loaded: `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        // Never back from draining to ready.
        let _ = self.0.compare_exchange(
            Readiness::Starting as u8,
            Readiness::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Shutting down or handing over: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.0.store(Readiness::Draining as u8, Ordering::Release);
    }

    pub fn readiness(&self) -> Readiness {
        match self.0.load(Ordering::Acquire) {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }
}

impl Readiness {
    /// The word `/readyz` answers with.
    pub fn label(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_one_way() {
        let health = Health::default();
        assert_eq!(health.readiness(), Readiness::Starting);
        health.set_ready();
        assert_eq!(health.clone().readiness(), Readiness::Ready);
        health.set_draining();
        health.set_ready();
        assert_eq!(health.readiness(), Readiness::Draining);
    }
}
