//! Tests of the top lists: ranking, reasons and statuses, the 15-minute window, bounded
//! size with thousands of destinations, and counts kept exact across threads and flushes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn seen(destination: &str, outcome: Outcome, status: u16, bytes: u64) -> Seen<'_> {
    Seen {
        destination: Some(destination),
        user: None,
        client: CLIENT,
        outcome,
        status,
        bytes,
        reason: Detail::None,
    }
}

fn names(list: &[Entry]) -> Vec<(&str, u64)> {
    list.iter().map(|e| (e.name.as_str(), e.value)).collect()
}

#[test]
fn lists_rank_destinations_users_and_clients_by_requests_and_bytes() {
    let top = TopTallies::default();
    for _ in 0..6 {
        top.record(&seen("a.example:80", Outcome::Allowed, 200, 100));
    }
    for _ in 0..3 {
        top.record(&Seen {
            user: Some("alice"),
            ..seen("b.example:443", Outcome::Tunnel, 200, 5000)
        });
    }
    top.record(&seen("c.example:80", Outcome::Allowed, 200, 10));
    let report = top.report(1000);
    let all = &report.since_start;
    assert_eq!((all.requests, all.bytes), (10, 600 + 15_000 + 10));
    assert_eq!(
        names(&all.destinations_by_requests),
        [
            ("a.example:80", 6),
            ("b.example:443", 3),
            ("c.example:80", 1)
        ]
    );
    assert_eq!(
        names(&all.destinations_by_bytes),
        [
            ("b.example:443", 15_000),
            ("a.example:80", 600),
            ("c.example:80", 10)
        ]
    );
    assert_eq!(names(&all.users_by_requests), [("alice", 3)]);
    assert_eq!(names(&all.users_by_bytes), [("alice", 15_000)]);
    assert_eq!(names(&all.clients_by_requests), [("192.0.2.7", 10)]);
    assert!(all.blocked.is_empty() && all.failing.is_empty());
    assert_eq!(&report.recent, all, "everything happened this minute");
}

#[test]
fn blocked_keep_their_reason_and_failing_origins_their_status() {
    let top = TopTallies::default();
    top.record(&Seen {
        reason: Detail::Label("blocked_host"),
        ..seen("ads.example:80", Outcome::Blocked, 403, 0)
    });
    top.record(&Seen {
        reason: Detail::Rule(Arc::from("no-ads")),
        ..seen("ads.example:80", Outcome::Blocked, 403, 0)
    });
    top.record(&seen("down.example:80", Outcome::UpstreamError, 502, 0));
    top.record(&seen("down.example:80", Outcome::UpstreamError, 504, 0));
    top.record(&seen("buggy.example:80", Outcome::Allowed, 500, 0));
    top.record(&seen("fine.example:80", Outcome::Allowed, 404, 0));
    top.record(&seen("bad.example:80", Outcome::Malformed, 501, 0));
    let all = top.report(7).since_start;
    assert_eq!(names(&all.blocked), [("ads.example:80", 2)]);
    assert_eq!(
        all.blocked[0].detail.as_deref(),
        Some("no-ads"),
        "latest wins"
    );
    assert_eq!(
        names(&all.failing),
        [("down.example:80", 2), ("buggy.example:80", 1)]
    );
    assert_eq!(all.failing[0].detail.as_deref(), Some("504"));
    assert_eq!(all.failing[1].detail.as_deref(), Some("500"));
    assert_eq!(
        all.denied, all.blocked,
        "`blocked` is the old name of `denied`"
    );
    assert_eq!(
        all.results,
        crate::stats::Results {
            allowed: 2,
            denied: 2,
            login_required: 0,
            errors: 3,
        },
        "502, 504 and 501 are errors; 500 and 404 came from origins that answered"
    );
}

#[test]
fn an_origin_that_failed_every_request_shows_its_failures_not_error_0() {
    let top = TopTallies::default();
    for status in [502, 504, 502] {
        top.record(&seen("down.example:80", Outcome::UpstreamError, status, 0));
    }
    let report = top.report(1);
    let json = serde_json::to_value(&report.since_start).unwrap_or_default();
    let entry = &json["failing"][0];
    assert_eq!(entry["name"], "down.example:80");
    assert_eq!(entry["value"], 3, "{entry}");
    assert_eq!(entry["overcount"], 0, "{entry}");
    assert!(
        entry.get("error").is_none(),
        "no field reads as `error 0`: {entry}"
    );
    assert_eq!(json["results"]["errors"], 3, "{json}");
}

#[test]
fn the_recent_window_forgets_minutes_older_than_fifteen() {
    let top = TopTallies::default();
    top.record(&seen("old.example:80", Outcome::Allowed, 200, 1));
    top.flush(100);
    top.record(&seen("new.example:80", Outcome::Allowed, 200, 1));
    top.flush(110);
    let report = top.report(100 + WINDOW_MINUTES - 1);
    assert_eq!(
        report.recent.requests, 2,
        "minute 100 is still in the window"
    );
    let report = top.report(100 + WINDOW_MINUTES);
    assert_eq!(
        names(&report.recent.destinations_by_requests),
        [("new.example:80", 1)]
    );
    assert_eq!(report.since_start.requests, 2);
    // Minutes keep their place however many flushes each gets.
    for minute in 200..240 {
        top.record(&seen("late.example:80", Outcome::Allowed, 200, 1));
        top.flush(minute);
        top.flush(minute);
    }
    let report = top.report(239);
    assert_eq!(
        names(&report.recent.destinations_by_requests),
        [("late.example:80", 15)]
    );
    assert_eq!(report.since_start.requests, 42);
}

#[test]
fn thousands_of_destinations_stay_within_the_capacities() {
    let top = TopTallies::default();
    let hosts: Vec<String> = (0..5000).map(|n| format!("h{n}.example:80")).collect();
    for (n, host) in hosts.iter().enumerate() {
        top.record(&seen(host, Outcome::Allowed, 200, 1));
        // One heavy destination among the crowd.
        if n % 10 == 0 {
            top.record(&seen("heavy.example:80", Outcome::Allowed, 200, 1));
        }
        if n % 100 == 0 {
            top.flush(5);
        }
    }
    let report = top.report(5);
    let list = &report.since_start.destinations_by_requests;
    assert_eq!(list.len(), LIST_LENGTH);
    assert_eq!(list[0].name, "heavy.example:80");
    assert!(
        list[0].value >= 500 && list[0].value - list[0].overcount <= 500,
        "{:?}",
        list[0]
    );
    assert_eq!(report.since_start.requests, 5500);
    let history = lock(&top.history);
    assert!(
        history
            .since_start
            .lists(usize::MAX)
            .destinations_by_requests
            .len()
            <= SPAN_CAPACITY
    );
    for (_, minute) in history.minutes.iter() {
        assert!(minute.lists(usize::MAX).destinations_by_requests.len() <= MINUTE_CAPACITY);
    }
}

#[test]
fn threads_record_into_their_own_shards_and_nothing_is_lost() {
    let top = Arc::new(TopTallies::default());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let top = Arc::clone(&top);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    top.record(&seen("shared.example:443", Outcome::Tunnel, 200, 2));
                }
            })
        })
        .collect();
    // Flushing while they record must not lose or double a count.
    for _ in 0..20 {
        top.flush(1);
    }
    for worker in workers {
        assert!(worker.join().is_ok());
    }
    let all = top.report(1).since_start;
    assert_eq!(
        names(&all.destinations_by_requests),
        [("shared.example:443", 4000)]
    );
    assert_eq!(
        names(&all.destinations_by_bytes),
        [("shared.example:443", 8000)]
    );
}
