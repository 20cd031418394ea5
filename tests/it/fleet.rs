//! A fleet behind a real HAProxy (`deploy/fleet.sh`: TCP mode, PROXY protocol v2,
//! `leastconn`, health checks on each instance's `/readyz`): traffic spreads over the
//! instances with the clients' own addresses in every access log; an instance killed
//! outright is taken out after the check interval; an instance stopped with SIGTERM
//! turns not-ready, is taken out while still accepting (the drain delay), and no request
//! fails.

use std::time::Duration;

use crate::common::fleet::{CLIENT_IP, Fleet, Instance, Load, readyz, signal, tunnel, wait_exit};
use crate::common::{Origin, echo_origin, within};

/// Access-log lines of `instance` for the load's requests and the tunnels.
fn load_lines(instance: &Instance) -> Vec<String> {
    instance
        .access_log()
        .into_iter()
        .filter(|line| line.contains("/load/") || line.contains(" CONNECT "))
        .collect()
}

/// Waits (bounded) until the instances' logs hold `total` load lines in all.
async fn logged(fleet: &Fleet, total: usize) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    for _ in 0..250 {
        lines = fleet.instances.iter().map(load_lines).collect::<Vec<_>>();
        if lines.iter().map(Vec::len).sum::<usize>() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_tunnels_spread_with_client_addresses_from_proxy_protocol() {
    let origin = Origin::fixed("fleet").await;
    let echo = echo_origin().await;
    let fleet = Fleet::start(2).await;
    fleet.wait_serving(origin.addr).await;

    let load = Load::start(fleet.haproxy, origin.addr, 16, 2000);
    let tunnels = futures_util::future::join_all((0..100).map(|_| tunnel(fleet.haproxy, echo)));
    let tunnel_failures: Vec<String> = within(tunnels)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    load.until_sent(2000).await;
    let (before, _) = load.finish().await;
    assert_eq!(before.sent, 2000);
    assert!(
        before.failures.is_empty(),
        "failed requests: {:?}",
        &before.failures[..before.failures.len().min(5)]
    );
    assert!(
        tunnel_failures.is_empty(),
        "failed tunnels: {tunnel_failures:?}"
    );

    let lines = logged(&fleet, 2100).await;
    let counts: Vec<usize> = lines.iter().map(Vec::len).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        2100,
        "every request and tunnel logged once: {counts:?}"
    );
    for (i, share) in counts.iter().enumerate() {
        assert!(
            *share >= 2100 / 10,
            "instance {i} got {share} of 2100: {counts:?}"
        );
    }
    let tunnels_logged: usize = lines
        .iter()
        .flatten()
        .filter(|l| l.contains(" CONNECT "))
        .count();
    assert_eq!(tunnels_logged, 100);
    for line in lines.iter().flatten() {
        let client = line.split_whitespace().nth(2).unwrap_or("");
        assert_eq!(
            client,
            CLIENT_IP.to_string(),
            "client from the PROXY header, not HAProxy's: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_taken_out_after_the_check_interval() {
    let origin = Origin::fixed("fleet").await;
    let fleet = Fleet::start(2).await;
    fleet.wait_serving(origin.addr).await;
    let load = Load::start(fleet.haproxy, origin.addr, 8, 100_000);
    load.until_sent(200).await;
    let victim = &fleet.instances[0];
    assert!(signal(victim.pid, "KILL"));
    // Check interval 200 ms, two failed checks: down well within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.mark();
    let marked = load.sent();
    load.until_sent(marked + 400).await;
    let (before, after) = load.finish().await;
    assert!(after.sent >= 400);
    assert!(
        after.failures.is_empty(),
        "{} of {} failed after the check interval: {:?}",
        after.failures.len(),
        after.sent,
        &after.failures[..after.failures.len().min(5)]
    );
    eprintln!(
        "while the kill was noticed: {} of {} failed",
        before.failures.len(),
        before.sent
    );
    let survivor = load_lines(&fleet.instances[1]).len();
    assert!(
        survivor >= after.sent,
        "the survivor served everything after: {survivor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_with_sigterm_drains_and_no_request_fails() {
    let origin = Origin::fixed("fleet").await;
    let fleet = Fleet::start(2).await;
    fleet.wait_serving(origin.addr).await;
    let load = Load::start(fleet.haproxy, origin.addr, 8, 100_000);
    load.until_sent(200).await;
    let stopped = &fleet.instances[0];
    assert!(signal(stopped.pid, "TERM"));
    let mut answer = 0;
    for _ in 0..50 {
        answer = readyz(stopped.metrics).await;
        if answer == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer, 503, "not ready while draining");
    // Not ready at once, still serving through the drain delay, then gone.
    wait_exit(stopped.pid, Duration::from_secs(15)).await;
    load.finish_without_failures(200).await;
    let stderr = stopped.stderr();
    assert!(
        stderr.contains("drain delay") && stderr.contains("final:"),
        "{stderr}"
    );
    assert!(fleet.instances[1].is_running());
}
