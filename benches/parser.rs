//! Request path micro-benchmark: parsing a typical browser request head, deciding its
//! body framing, and writing the rewritten head for the origin. Prints the median
//! nanoseconds per request over several samples. Run: `cargo bench --bench parser`.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use proxy_server::http::{framing, head, rewrite};

const ROUNDS_PER_SAMPLE: usize = 20_000;
const SAMPLES: usize = 15;

/// A request head as a browser sends it through a proxy (about 600 bytes, 10 fields).
const REQUEST: &[u8] = b"GET http://www.example.com/path/to/page.html?query=1&x=%20y HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate\r\n\
Proxy-Connection: keep-alive\r\n\
Proxy-Authorization: Basic ZGVtbzpkZW1vLXBhc3N3b3Jk\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Priority: u=0, i\r\n\r\n";

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median nanoseconds per call of `step` over the samples.
fn measure(mut step: impl FnMut()) -> f64 {
    let samples = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS_PER_SAMPLE {
                step();
            }
            start.elapsed().as_nanos() as f64 / ROUNDS_PER_SAMPLE as f64
        })
        .collect();
    median(samples)
}

fn main() {
    let parse = measure(|| {
        let mut buf = BytesMut::from(REQUEST);
        black_box(head::parse_request(&mut buf).ok());
    });
    let mut buf = BytesMut::from(REQUEST);
    let Ok(Some(parsed)) = head::parse_request(&mut buf) else {
        panic!("the sample request must parse");
    };
    let all = measure(|| {
        let mut buf = BytesMut::from(REQUEST);
        if let Ok(Some(request)) = head::parse_request(&mut buf) {
            let length = framing::request_body(request.version, &request.headers);
            if let Ok(length) = length {
                black_box(rewrite::origin_request(
                    &request,
                    length,
                    rewrite::Outgoing::plain("proxy-server"),
                ));
            }
        }
    });
    let rewrite_only = measure(|| {
        black_box(rewrite::origin_request(
            &parsed,
            framing::BodyLength::Empty,
            rewrite::Outgoing::plain("proxy-server"),
        ));
    });
    println!(
        "request head of {} bytes, median of {SAMPLES} samples:",
        REQUEST.len()
    );
    println!("  parse                      {parse:8.0} ns");
    println!("  rewrite for the origin     {rewrite_only:8.0} ns");
    println!("  parse + framing + rewrite  {all:8.0} ns");
}
