//! The chunked body decoder over an in-memory reader. Invariants: no panic; what it
//! accepts it re-encodes canonically, and decoding that output again gives the same
//! bytes and the same output (the canonical form is a fixed point).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use proxy_server::error::Side;
use proxy_server::http::body::{Relay, relay_body};
use proxy_server::http::{BodyLength, Reader};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime for the fuzz target")
    })
}

/// Decodes `input` as a chunked body: the canonical re-encoding and the decoded bytes.
async fn decode(input: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut src = Reader::new(input, Side::Client);
    let mut out = Vec::new();
    let mut decoded = Vec::new();
    let relay = Relay {
        read_timeout: Duration::from_secs(1),
        dst_side: Side::Upstream,
        dechunk: false,
    };
    relay_body(&mut src, &mut out, BodyLength::Chunked, relay, &mut |b: &[u8]| {
        decoded.extend_from_slice(b)
    })
    .await
    .ok()?;
    Some((out, decoded))
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let Some((out, decoded)) = decode(data).await else {
            return;
        };
        let (again, decoded_again) = decode(&out).await.expect("canonical output refused");
        assert_eq!(decoded, decoded_again);
        assert_eq!(out, again);
    });
});
