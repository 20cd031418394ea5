//! Tests of the counters: gauges held by guards, outcomes, bytes and cache totals, labels.

use super::*;

#[test]
fn guards_raise_gauges_while_alive_and_lower_them_once() {
    let stats = Arc::new(Stats::default());
    let first = stats.connection_opened(2).unwrap();
    let second = stats.connection_opened(2).unwrap();
    assert!(
        stats.connection_opened(2).is_none(),
        "a third is over the cap"
    );
    let tunnel = stats.tunnel_opened();
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.connections_accepted, snapshot.connections_active),
        (2, 2)
    );
    assert_eq!((snapshot.tunnels_opened, snapshot.tunnels_active), (1, 1));
    drop(first);
    assert_eq!(stats.snapshot().connections_active, 1);
    drop(tunnel);
    drop(second);
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.connections_accepted, snapshot.connections_active),
        (2, 0)
    );
    assert_eq!((snapshot.tunnels_opened, snapshot.tunnels_active), (1, 0));
}

#[test]
fn guard_is_released_when_a_task_panics() {
    let stats = Arc::new(Stats::default());
    let guard = stats.connection_opened(1).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = guard;
        panic!("connection task failed");
    }));
    assert!(result.is_err());
    assert_eq!(stats.snapshot().connections_active, 0);
}

#[test]
fn outcomes_are_counted_separately_and_tunnels_stay_out_of_the_histogram() {
    let stats = Stats::default();
    let mix = [
        (Outcome::Allowed, 5),
        (Outcome::Blocked, 3),
        (Outcome::AuthFailed, 2),
        (Outcome::Malformed, 1),
        (Outcome::UpstreamError, 4),
        (Outcome::Tunnel, 6),
    ];
    for (outcome, times) in mix {
        for _ in 0..times {
            stats.request_finished(outcome, Duration::from_millis(2));
        }
    }
    let snapshot = stats.snapshot();
    for (outcome, times) in mix {
        assert_eq!(snapshot.requests.get(outcome), times, "{}", outcome.label());
    }
    assert_eq!(snapshot.requests.total(), 21);
    assert_eq!(snapshot.request_durations.count, 15);
}

#[test]
fn byte_and_cache_counters_accumulate() {
    let stats = Stats::default();
    stats.add_bytes_from_client(10);
    stats.add_bytes_from_client(5);
    stats.add_bytes_to_client(7);
    stats.add_bytes_to_origin(3);
    stats.add_bytes_from_origin(100);
    let totals = CacheTotals {
        hits: 1,
        misses: 2,
        evictions: 1,
        bytes_held: 2048,
        entries: 1,
    };
    stats.set_cache(totals);
    stats.log_line_dropped();
    stats.panic_caught();
    let s = stats.snapshot();
    assert_eq!(
        (
            s.bytes_from_client,
            s.bytes_to_client,
            s.bytes_to_origin,
            s.bytes_from_origin
        ),
        (15, 7, 3, 100)
    );
    assert_eq!((s.cache_hits, s.cache_misses, s.cache_evictions), (1, 2, 1));
    assert_eq!((s.cache_bytes_held, s.cache_entries), (2048, 1));
    assert_eq!((s.log_lines_dropped, s.panics_caught), (1, 1));
}

#[test]
fn labels_are_distinct_and_snake_case() {
    let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
    let mut unique = labels.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), labels.len());
    assert!(
        labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    );
}
