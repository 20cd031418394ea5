//! The copy of a response body taken while it streams to the client. The body is stored
//! only if it arrived whole (`finish`) and fits the object limit; a body that breaks off
//! drops the filler without a store, and a body that outgrows the limit stops being
//! copied at once so a large download costs no cache memory.

use std::sync::Arc;

use bytes::BytesMut;

use super::flight::FlightGuard;
use super::key::UriKey;
use super::store::{Entry, Store};

/// Collects one response for the store. Dropping it without [`Filler::finish`] stores
/// nothing and releases any requests waiting on this fetch.
pub struct Filler {
    store: Arc<Store>,
    key: UriKey,
    entry: Entry,
    body: BytesMut,
    /// Most body bytes that still fit the object limit with this entry's headers.
    body_limit: usize,
    /// `Content-Length` of the response, when it had one.
    expected: Option<usize>,
    /// False once the body outgrew the limit: nothing more is copied.
    collecting: bool,
    flight: Option<FlightGuard>,
}

impl Filler {
    /// `entry` has an empty body; returns `None` if even that, or the declared length,
    /// is over the object limit.
    pub(super) fn new(
        store: Arc<Store>,
        key: UriKey,
        entry: Entry,
        expected: Option<usize>,
        flight: Option<FlightGuard>,
    ) -> Option<Filler> {
        let body_limit = store.max_object().checked_sub(entry.size())?;
        if expected.is_some_and(|length| length > body_limit) {
            return None;
        }
        let capacity = expected.unwrap_or(0).min(body_limit);
        Some(Filler {
            store,
            key,
            entry,
            body: BytesMut::with_capacity(capacity),
            body_limit,
            expected,
            collecting: true,
            flight,
        })
    }

    /// Copies the next piece of the body as it is written to the client.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.collecting {
            return;
        }
        if self.body.len() + chunk.len() > self.body_limit {
            // Too big to store: free the copy now and let waiting requests go.
            self.collecting = false;
            self.body = BytesMut::new();
            self.flight = None;
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// Whether the body is still being copied (false once it outgrew the limit).
    pub fn is_collecting(&self) -> bool {
        self.collecting
    }

    /// Call only once the whole body has been received and framed correctly. Stores the
    /// response and returns whether it was stored. A body whose length disagrees with
    /// its `Content-Length` is not stored (RFC 9111 §3.3: an incomplete response is
    /// not to be served as complete).
    pub fn finish(self) -> bool {
        if !self.collecting
            || self
                .expected
                .is_some_and(|length| length != self.body.len())
        {
            return false;
        }
        let Filler {
            store,
            key,
            mut entry,
            body,
            flight,
            ..
        } = self;
        entry.body = body.freeze();
        let stored = store.insert(key, Arc::new(entry));
        // Followers are released only now, so when they look again they find the entry.
        drop(flight);
        stored
    }
}
