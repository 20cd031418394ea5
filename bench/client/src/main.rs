//! Load tools that `bench/bench.py` drives where wrk cannot: a byte source for
//! tunnels, one CONNECT tunnel's throughput, HTTPS keep-alive load inside
//! CONNECT tunnels, thousands of idle client connections, and a minimal relay
//! (the floor any user-space relay pays). Each tool prints
//! one JSON line of results on stdout; the harness owns timing policy, rounds
//! and reporting. Only loopback addresses are ever passed in.

mod args;
mod http;
mod idle;
mod proxy;
mod relay;
mod source;
mod tls_load;
mod tunnel;

use anyhow::{Result, bail};

const USAGE: &str = "usage: bench-client source|tunnel|tls-load|idle|relay [--flag value]... (tunnel and tls-load: --proxy ADDR [--proxy-ca FILE] or --socks ADDR)";

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let Some(tool) = argv.next() else {
        bail!(USAGE);
    };
    let flags = args::Flags::parse(argv)?;
    if tool == "relay" {
        // Blocking threads, no runtime: the floor has no event loop to pay for.
        return relay::run(&flags);
    }
    // One runtime thread, like `wrk -t1`: the client must not take both cores
    // from the servers it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match tool.as_str() {
            "source" => source::run(&flags).await,
            "tunnel" => tunnel::run(&flags).await,
            "tls-load" => tls_load::run(&flags).await,
            "idle" => idle::run(&flags).await,
            _ => bail!(USAGE),
        }
    })
}
