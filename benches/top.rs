//! What counting one finished exchange in the dashboard's top lists costs the request
//! path (`TopTallies::record`, called from `Context::record`): one destination over and
//! over (every list hits), and 10,000 distinct destinations and clients in turn (every
//! list misses and evicts its smallest counter). The sampler's flush runs every 5,000
//! records, as it would every few seconds under load. Prints the median nanoseconds per
//! record over several samples. Run: `cargo bench --bench top`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use proxy_server::stats::top::{Detail, Seen, TopTallies};
use proxy_server::stats::{Outcome, Stats};

const RECORDS_PER_SAMPLE: usize = 200_000;
const SAMPLES: usize = 9;
const FLUSH_EVERY: usize = 5_000;
const DISTINCT: usize = 10_000;

fn seen<'a>(destination: &'a str, user: &'a str, client: IpAddr) -> Seen<'a> {
    Seen {
        destination: Some(destination),
        user: Some(user),
        client,
        outcome: Outcome::Allowed,
        status: 200,
        bytes: 1200,
        reason: Detail::None,
    }
}

/// Median nanoseconds per record, `pick(n)` choosing the n-th exchange.
fn measure<'a>(top: &TopTallies, pick: impl Fn(usize) -> Seen<'a>) -> f64 {
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for n in 0..RECORDS_PER_SAMPLE {
                top.record(black_box(&pick(n)));
                if n % FLUSH_EVERY == 0 {
                    top.flush(n as u64 / 60_000);
                }
            }
            start.elapsed().as_nanos() as f64 / RECORDS_PER_SAMPLE as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn main() {
    let stats = Stats::default();
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let one = measure(stats.top(), |_| seen("example.com:443", "alice", client));
    println!("one destination, user and client:      {one:6.1} ns/record");

    let stats = Stats::default();
    let hosts: Vec<String> = (0..DISTINCT)
        .map(|n| format!("host{n}.example.com:443"))
        .collect();
    let users: Vec<String> = (0..DISTINCT).map(|n| format!("user{n}")).collect();
    let clients: Vec<IpAddr> = (0..DISTINCT as u32)
        .map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
        .collect();
    let many = measure(stats.top(), |n| {
        let i = n % DISTINCT;
        seen(&hosts[i], &users[i], clients[i])
    });
    println!("{DISTINCT} destinations, users and clients: {many:6.1} ns/record");
}
