//! ACL lookup cost with a large list: 100,000 domain rules (70,000 exact names,
//! 30,000 `*.` wildcards) and 10,000 CIDR rules (8,000 IPv4, 2,000 IPv6).
//! Prints the median nanoseconds per lookup over several samples for hits and
//! misses, plus, for scale, what a linear scan over the CIDR list would cost. Then the
//! same 100,000 names and 10,000 networks as `dest` lists of policy rules (a
//! `--config` file behind the sample policy's shape), measured per request against the
//! blacklist in paired samples: a name hit decided at admission, and a miss that waits
//! for the destination's address (admission's evaluation plus the dialer's settling,
//! against the blacklist's name check plus its address check). The pairs are measured
//! again with lists a hundred times shorter: what the rules add to the blacklist's time
//! is then seen not to grow with the lists (the entries cost what the blacklist's do),
//! and is what the rule walk itself costs.
//! Run: `cargo bench --bench acl`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;
use std::sync::Arc;

use proxy_server::acl::{Baseline, Evaluation, Facts, Host, RuleBook, Verdict, normalise, parse};

const EXACT_RULES: usize = 70_000;
const WILDCARD_RULES: usize = 30_000;
const V4_RULES: usize = 8_000;
const V6_RULES: usize = 2_000;
/// Distinct queries per case, cycled through so the branch predictor and caches
/// cannot learn a single answer.
const QUERIES: usize = 1024;
const ROUNDS_PER_SAMPLE: usize = 50;
const SAMPLES: usize = 15;

/// xorshift64*: deterministic, so every run measures the same list.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One generated list, as blacklist text and its networks, and the queries asked of it.
struct Lists {
    text: String,
    nets: Vec<IpNet>,
    exact_hits: Vec<String>,
    wildcard_hits: Vec<String>,
    name_misses: Vec<String>,
}

/// The list with every count divided by `shrink`, and its queries.
fn lists(rng: &mut Rng, shrink: usize) -> Lists {
    let (exact, wildcard) = (EXACT_RULES / shrink, WILDCARD_RULES / shrink);
    let (text, nets) = build_rules(rng, shrink);
    Lists {
        exact_hits: (0..QUERIES)
            .map(|_| {
                let i = rng.below(exact);
                format!("host{i}.site{}.com", i % 997)
            })
            .collect(),
        wildcard_hits: (0..QUERIES)
            .map(|_| format!("a.b.c{}.ads{}.net", rng.below(100), rng.below(wildcard)))
            .collect(),
        name_misses: (0..QUERIES)
            .map(|_| format!("www.cdn{}.example{}.org", rng.below(1000), rng.below(1000)))
            .collect(),
        text,
        nets,
    }
}

fn build_rules(rng: &mut Rng, shrink: usize) -> (String, Vec<IpNet>) {
    let mut text = String::with_capacity(4 << 20);
    for i in 0..EXACT_RULES / shrink {
        text.push_str(&format!("host{i}.site{}.com\n", i % 997));
    }
    for i in 0..WILDCARD_RULES / shrink {
        text.push_str(&format!("*.ads{i}.net\n"));
    }
    let mut nets = Vec::with_capacity(V4_RULES + V6_RULES);
    for _ in 0..V4_RULES / shrink {
        let len = 20 + rng.below(13) as u8; // /20../32: the list leaves most of the space free
        let addr = Ipv4Addr::from(rng.next() as u32);
        nets.push(IpNet::new(IpAddr::V4(addr), len).unwrap().trunc());
    }
    for _ in 0..V6_RULES / shrink {
        let len = 32 + rng.below(97) as u8;
        let addr = Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
        nets.push(IpNet::new(IpAddr::V6(addr), len).unwrap().trunc());
    }
    for net in &nets {
        text.push_str(&format!("{net} # generated\n"));
    }
    (text, nets)
}

/// Median ns per call of `check` over `inputs`.
fn median_ns<T>(inputs: &[T], mut check: impl FnMut(&T) -> bool) -> f64 {
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS_PER_SAMPLE {
                for input in inputs {
                    black_box(check(black_box(input)));
                }
            }
            start.elapsed().as_nanos() as f64 / (ROUNDS_PER_SAMPLE * inputs.len()) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

fn addresses(rng: &mut Rng, nets: &[IpNet], want_hit: bool, v6: bool) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(QUERIES);
    while out.len() < QUERIES {
        let ip = if want_hit {
            // A random address inside a random rule of the right family.
            let net = nets[rng.below(nets.len())];
            match net {
                IpNet::V4(n) if !v6 => {
                    let span = u32::MAX >> n.prefix_len().min(31);
                    let base = u32::from(n.network());
                    IpAddr::V4(Ipv4Addr::from(base | (rng.next() as u32 & span)))
                }
                IpNet::V6(n) if v6 => IpAddr::V6(n.network()),
                _ => continue,
            }
        } else if v6 {
            IpAddr::V6(Ipv6Addr::from(
                u128::from(rng.next()) << 64 | u128::from(rng.next()),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
        };
        // Brute force confirms each query is what the case says it is.
        if nets.iter().any(|n| n.contains(&ip)) == want_hit && !proxy_server::acl::is_local(ip) {
            out.push(SocketAddr::new(ip, 443));
        }
    }
    out
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let full = lists(&mut rng, 1);
    let rules = parse(&full.text, "generated").expect("generated rules parse");
    let parse_ms = start.elapsed().as_secs_f64() * 1e3;
    let policy = Baseline::with_rules(rules);
    println!(
        "rules: {EXACT_RULES} exact + {WILDCARD_RULES} wildcard names, {V4_RULES} IPv4 + {V6_RULES} IPv6 networks; \
         generate+parse+freeze {parse_ms:.0} ms"
    );
    let Lists {
        nets,
        exact_hits,
        wildcard_hits,
        name_misses,
        ..
    } = &full;
    let spelled_hits: Vec<String> = (0..QUERIES)
        .map(|_| {
            let i = rng.below(EXACT_RULES);
            format!("HOST{i}.Site{}.com.:443", i % 997)
        })
        .collect();

    let blocked = |host: &String| policy.check_host(host).is_err();
    let cases = [
        (
            "name hit, exact",
            median_ns(exact_hits, blocked),
            exact_hits,
        ),
        (
            "name hit, wildcard 3 labels deep",
            median_ns(wildcard_hits, blocked),
            wildcard_hits,
        ),
        (
            "name hit, upper case + dot + port",
            median_ns(&spelled_hits, blocked),
            &spelled_hits,
        ),
        (
            "name miss, 4 labels",
            median_ns(name_misses, blocked),
            name_misses,
        ),
    ];
    for (label, ns, inputs) in cases {
        let hits = inputs.iter().filter(|h| blocked(h)).count();
        println!("{label:<40} {ns:>7.1} ns/lookup   ({hits}/{QUERIES} blocked)");
    }

    let mut addr_cases = Vec::new();
    for (label, hit, v6) in [
        ("IPv4 address hit", true, false),
        ("IPv4 address miss", false, false),
        ("IPv6 address hit", true, true),
        ("IPv6 address miss", false, true),
    ] {
        let queries = addresses(&mut rng, nets, hit, v6);
        let ns = median_ns(&queries, |a| {
            policy.check_addrs(std::slice::from_ref(a)).is_err()
        });
        let blocked = queries
            .iter()
            .filter(|a| policy.check_addrs(&[**a]).is_err())
            .count();
        assert_eq!(blocked, if hit { QUERIES } else { 0 }, "{label}");
        println!("{label:<40} {ns:>7.1} ns/lookup   ({blocked}/{QUERIES} blocked)");
        addr_cases.push(queries);
    }

    // The same comparison with lists a hundred times shorter: what stays is the walk.
    let short = lists(&mut rng, 100);
    let short_blacklist = Baseline::with_rules(parse(&short.text, "short").expect("short parses"));
    let short_misses = addresses(&mut rng, &short.nets, false, false);
    let small = policy_rules(&short_blacklist, &short, &short_misses);
    let large = policy_rules(&policy, &full, &addr_cases[1]);
    println!(
        "what the rules add to the blacklist's time per request (paired), with the short lists and the full ones:"
    );
    for ((shape, small), (_, large)) in small.iter().zip(&large) {
        for ((case, small), (_, large)) in small.iter().zip(large) {
            println!(
                "{shape:<8} {case:<32} {:>+7.1} ns with 1,100 entries, {:>+7.1} ns with 110,000",
                small.extra, large.extra
            );
        }
    }

    // For scale only: the same IPv4 misses checked by scanning every network.
    let misses = &addr_cases[1][..64];
    let start = Instant::now();
    for a in misses {
        black_box(nets.iter().any(|n| n.contains(&black_box(a.ip()))));
    }
    let scan_ns = start.elapsed().as_nanos() as f64 / misses.len() as f64;
    println!(
        "{:<40} {scan_ns:>7.1} ns/lookup   (linear scan, for comparison)",
        "IPv4 miss, scanning all 10,000 networks"
    );
}

/// Each case's medians, labelled.
type Pairs = Vec<(&'static str, Pair)>;

/// The same lists as policy rules: names in one rule's `dest_files`, networks in
/// another's `dest`; first as a policy of just those two rules (what the lists cost),
/// then behind a ports rule and a users rule, as the sample policy has them (what a
/// real rule walk adds). Prints and returns each shape's pairs.
fn policy_rules(
    blacklist: &Baseline,
    lists: &Lists,
    addr_misses: &[SocketAddr],
) -> Vec<(&'static str, Pairs)> {
    let dir = std::env::temp_dir().join(format!("acl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (names, networks): (Vec<&str>, Vec<&str>) =
        lists.text.lines().partition(|l| !l.contains('/'));
    std::fs::write(dir.join("names.txt"), names.join("\n")).expect("write list");
    let quoted: Vec<String> = networks
        .iter()
        .map(|n| format!("\"{}\"", n.split('#').next().unwrap_or("").trim()))
        .collect();
    let list_rules = format!(
        "[[rules]]\nname = \"names\"\naction = \"deny\"\ndest_files = [\"names.txt\"]\n\
         [[rules]]\nname = \"networks\"\naction = \"deny\"\ndest = [{}]\n",
        quoted.join(", ")
    );
    let sample_shaped = format!(
        "[[rules]]\nname = \"mail\"\naction = \"deny\"\nports = [\"25\", \"465\", \"587\"]\n\
         [[rules]]\nname = \"staff\"\naction = \"allow\"\nusers = [\"alice\"]\ndest = [\"*.github.com\"]\n\
         {list_rules}"
    );
    let mut measured = Vec::new();
    for (shape, rules) in [("2 rules", list_rules), ("4 rules", sample_shaped)] {
        let policy = format!("default = \"allow\"\n{rules}");
        let start = Instant::now();
        let (file, errors) = proxy_server::config::parse_file(&policy, "bench.toml", &dir, &[]);
        let parse_ms = start.elapsed().as_secs_f64() * 1e3;
        assert!(errors.is_empty(), "{errors:?}");
        println!(
            "policy of {shape} ({}), {} names and {} networks in `dest`/`dest_files`; parse+freeze {parse_ms:.0} ms",
            if shape == "2 rules" {
                "the names and the networks"
            } else {
                "a ports and a users rule first"
            },
            names.len(),
            networks.len()
        );
        let book = Arc::new(file.rules);
        measured.push((shape, compare(blacklist, &book, lists, addr_misses)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// Per request, the same lists as the blacklist and as the rules of `book`, in paired
/// samples.
fn compare(
    blacklist: &Baseline,
    book: &Arc<RuleBook>,
    lists: &Lists,
    addr_misses: &[SocketAddr],
) -> Pairs {
    let blacklist_hit = |host: &String| blacklist.check_host(host).is_err();
    let rules_hit = |host: &String| {
        let host = normalise(host);
        matches!(
            book.evaluate(&anonymous_connect(&host)),
            Evaluation::Decided(Verdict::Deny { .. })
        )
    };
    let mut pairs = Vec::new();
    for (label, hits) in [
        ("name hit, exact", &lists.exact_hits),
        ("name hit, wildcard 3 labels deep", &lists.wildcard_hits),
    ] {
        let denied = hits.iter().filter(|h| rules_hit(h)).count();
        assert_eq!(denied, hits.len(), "every hit is denied by the names rule");
        pairs.push((label, paired(hits, blacklist_hit, rules_hit)));
    }

    // A miss: the name is not listed, so both wait for the addresses (the networks).
    let requests: Vec<(&String, SocketAddr)> = lists
        .name_misses
        .iter()
        .zip(addr_misses.iter().copied())
        .collect();
    let blacklist_miss = |(host, addr): &(&String, SocketAddr)| {
        blacklist.check_host(host).is_err() || blacklist.check_addrs(&[*addr]).is_err()
    };
    let rules_miss = |(name, addr): &(&String, SocketAddr)| {
        let host = normalise(name);
        match book.evaluate(&anonymous_connect(&host)) {
            Evaluation::Decided(_) => panic!("a name miss waits for the networks rule"),
            Evaluation::Pending(check) => !matches!(
                check.settle(std::slice::from_ref(addr)),
                Verdict::Allow { .. }
            ),
        }
    };
    let refused = requests.iter().filter(|r| rules_miss(r)).count();
    assert_eq!(refused, 0, "no miss is refused");
    pairs.push((
        "name miss, then one address",
        paired(&requests, blacklist_miss, rules_miss),
    ));
    for (label, pair) in &pairs {
        report_pair(label, *pair);
    }
    pairs
}

fn report_pair(label: &str, pair: Pair) {
    println!(
        "{label:<40} blacklist {:>7.1} ns, rules {:>7.1} ns: rules/blacklist {:.2}, {:+.1} ns",
        pair.a, pair.b, pair.ratio, pair.extra
    );
}

/// Median ns per call of `a` and of `b` over `inputs`, and the median of their ratio
/// `b / a` per sample. The two are timed back to back in each sample, in alternating
/// order, so other work on a shared machine weighs on both alike.
fn paired<T>(inputs: &[T], mut a: impl FnMut(&T) -> bool, mut b: impl FnMut(&T) -> bool) -> Pair {
    let time = |f: &mut dyn FnMut(&T) -> bool| {
        let start = Instant::now();
        for _ in 0..ROUNDS_PER_SAMPLE {
            for input in inputs {
                black_box(f(black_box(input)));
            }
        }
        start.elapsed().as_nanos() as f64 / (ROUNDS_PER_SAMPLE * inputs.len()) as f64
    };
    let samples: Vec<(f64, f64)> = (0..SAMPLES * 2)
        .map(|sample| {
            if sample % 2 == 0 {
                let first = time(&mut a);
                (first, time(&mut b))
            } else {
                let second = time(&mut b);
                (time(&mut a), second)
            }
        })
        .collect();
    let median = |pick: &dyn Fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Pair {
        a: median(&|s| s.0),
        b: median(&|s| s.1),
        ratio: median(&|s| s.1 / s.0),
        extra: median(&|s| s.1 - s.0),
    }
}

/// Medians of paired samples, in ns per call: of `a`, of `b`, and of each sample's
/// `b / a` and `b - a`.
#[derive(Clone, Copy)]
struct Pair {
    a: f64,
    b: f64,
    ratio: f64,
    extra: f64,
}

/// A CONNECT to `host:443` from 10.0.0.1 without credentials.
fn anonymous_connect<'a>(host: &'a Host<'a>) -> Facts<'a> {
    Facts {
        user: None,
        client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        host,
        port: 443,
        method: "CONNECT",
        now: None,
    }
}
