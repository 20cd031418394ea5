//! The `/metrics` body: [`Stats`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Owns metric names, help texts and types. The counters live in [`Stats`] as plain atomics;
//! on each scrape a `prometheus-client` collector reads one snapshot and lets the crate do the
//! formatting (name suffixes such as `_total`, label escaping, `le` buckets, float spelling),
//! which is where hand-written exporters usually go wrong.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::{HistogramSnapshot, Limit, Outcome, Snapshot, Stats};

/// The `Content-Type` for a Prometheus text body.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Renders every statistic as Prometheus text.
pub fn render(stats: &Arc<Stats>) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("proxy");
    registry.register_collector(Box::new(StatsCollector(Arc::clone(stats))));
    let mut body = String::with_capacity(4096);
    prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)?;
    Ok(body)
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn byte_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(
        name,
        help,
        Some(&Unit::Bytes),
        metric.metric_type(),
    )?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = self.0.snapshot();
        let e = &mut encoder;
        counter(
            e,
            "connections_accepted",
            "Client connections accepted.",
            s.connections_accepted,
        )?;
        gauge(
            e,
            "connections_active",
            "Client connections open now.",
            s.connections_active,
        )?;
        encode_requests(e, &s)?;
        counter(
            e,
            "tunnels_opened",
            "CONNECT tunnels established.",
            s.tunnels_opened,
        )?;
        gauge(
            e,
            "tunnels_active",
            "CONNECT tunnels open now.",
            s.tunnels_active,
        )?;
        byte_counter(
            e,
            "client_received",
            "Bytes read from clients.",
            s.bytes_from_client,
        )?;
        byte_counter(
            e,
            "client_sent",
            "Bytes written to clients.",
            s.bytes_to_client,
        )?;
        byte_counter(
            e,
            "origin_sent",
            "Bytes written to origins.",
            s.bytes_to_origin,
        )?;
        byte_counter(
            e,
            "origin_received",
            "Bytes read from origins.",
            s.bytes_from_origin,
        )?;
        counter(
            e,
            "cache_hits",
            "Requests answered from the cache.",
            s.cache_hits,
        )?;
        counter(
            e,
            "cache_misses",
            "Cacheable requests fetched from the origin.",
            s.cache_misses,
        )?;
        counter(
            e,
            "cache_evictions",
            "Cache entries evicted to make room.",
            s.cache_evictions,
        )?;
        gauge(
            e,
            "cache_held_bytes",
            "Bytes of responses held in the cache.",
            s.cache_bytes_held,
        )?;
        gauge(
            e,
            "cache_entries",
            "Responses held in the cache.",
            s.cache_entries,
        )?;
        counter(
            e,
            "log_lines_dropped",
            "Log lines lost to a full queue or a write error.",
            s.log_lines_dropped,
        )?;
        counter(
            e,
            "panics_caught",
            "Connection tasks that panicked.",
            s.panics_caught,
        )?;
        counter(
            e,
            "tls_handshakes_failed",
            "TLS handshakes with clients that failed or timed out.",
            s.tls_handshakes_failed,
        )?;
        counter(
            e,
            "sni_refused",
            "Tunnels refused for the server name their TLS ClientHello asked for (--sni-check).",
            s.sni_refused,
        )?;
        counter(
            e,
            "proxy_headers_rejected",
            "Connections closed for a missing, malformed or late PROXY-protocol header.",
            s.proxy_headers_rejected,
        )?;
        encode_limited(e, &s)?;
        gauge(
            e,
            "users_throttled",
            "Users (or client addresses) with a transfer waiting for bandwidth now.",
            s.users_throttled,
        )?;
        encode_buffer_budget(e)?;
        encode_durations(e, &s)?;
        encode_dns(e, &s)?;
        encode_inspection(e, &s)?;
        super::parents::encode(e, &s.parents)?;
        encode_rule_decisions(e, &self.0)
    }
}

/// The process's body-buffer budget (`--max-buffer-memory`): its limit, what buffers
/// hold of it now, and how often growth was refused.
fn encode_buffer_budget(encoder: &mut DescriptorEncoder) -> fmt::Result {
    let usage = crate::budget::global().usage();
    gauge(
        encoder,
        "buffer_memory_limit_bytes",
        "Memory body buffers may grow into beyond their base size (--max-buffer-memory).",
        usage.limit as u64,
    )?;
    gauge(
        encoder,
        "buffer_memory_used_bytes",
        "Memory body buffers hold now beyond their base size.",
        usage.used as u64,
    )?;
    counter(
        encoder,
        "buffer_growth_refused",
        "Times a body buffer wanted to grow and the budget was spent.",
        usage.refused,
    )
}

/// `proxy_rule_decisions_total{rule="…",action="allow|deny|auth_required"}`: what each
/// access-policy rule (and the blacklist, and the policy's default) decided.
fn encode_rule_decisions(encoder: &mut DescriptorEncoder, stats: &Stats) -> fmt::Result {
    let rows = stats.rule_decisions();
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        "rule_decisions",
        "Requests decided by each access-policy rule, by action.",
        None,
        MetricType::Counter,
    )?;
    for (rule, action, count) in rows {
        let metric = ConstCounter::new(count);
        let labels = [("rule", rule.as_ref()), ("action", action.label())];
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of counters told apart by one label (`proxy_requests_total{outcome="…"}`,
/// `proxy_limited_total{limit="…"}`), so dashboards can sum or ratio them without
/// knowing the list.
fn counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        ConstCounter::new(count).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

fn encode_requests(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let counts = Outcome::ALL.map(|outcome| (outcome.label(), snapshot.requests.get(outcome)));
    let about = (
        "requests",
        "Finished requests and closed tunnels, by outcome.",
    );
    counter_family(encoder, about, "outcome", counts)
}

/// What each per-user limit held back: refused requests and connections, transfers
/// slowed, attempts from blocked addresses.
fn encode_limited(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let counts = Limit::ALL.map(|limit| (limit.label(), snapshot.limited.get(limit)));
    let about = (
        "limited",
        "Requests refused, connections refused, transfers slowed and blocked attempts, by per-user limit.",
    );
    counter_family(encoder, about, "limit", counts)
}

fn encode_durations(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let about = (
        "request_duration",
        "Time from request start to the last byte sent (tunnels excluded).",
    );
    seconds_histogram(encoder, about, &snapshot.request_durations)
}

/// The resolver: names looked up, answered from the cache, waiting on another's query,
/// failed, and how long queries took.
fn encode_dns(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let dns = &snapshot.dns;
    counter(
        encoder,
        "dns_lookups",
        "Host names resolved (address literals excluded).",
        dns.lookups,
    )?;
    counter(
        encoder,
        "dns_cache_hits",
        "Lookups answered from the resolver's cache (positive or negative).",
        dns.cache_hits,
    )?;
    counter(
        encoder,
        "dns_collapsed",
        "Lookups that waited for the same name's query already in flight.",
        dns.collapsed,
    )?;
    counter(
        encoder,
        "dns_failures",
        "DNS queries that found no address, timed out or failed.",
        dns.failures,
    )?;
    let about = (
        "dns_query_duration",
        "Time DNS queries took (cache hits excluded).",
    );
    seconds_histogram(encoder, about, &dns.query_durations)
}

/// TLS inspection: leaf certificates signed and served from the cache, and how long
/// signing took.
fn encode_inspection(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let inspection = &snapshot.inspection;
    counter(
        encoder,
        "inspection_leaves_generated",
        "Leaf certificates signed by the inspection CA.",
        inspection.leaves_generated,
    )?;
    counter(
        encoder,
        "inspection_leaves_cached",
        "Leaf certificates served from the cache.",
        inspection.leaves_cached,
    )?;
    let about = (
        "inspection_leaf",
        "Time making a leaf certificate took (key generation and signature).",
    );
    seconds_histogram(encoder, about, &inspection.leaf_durations)
}

fn seconds_histogram(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    histogram: &HistogramSnapshot,
) -> fmt::Result {
    // The crate accumulates bucket counts itself, so hand it per-bucket counts; the bound
    // `u64::MAX` in our snapshot stands for +Inf.
    let mut previous = 0;
    let buckets: Vec<(f64, u64)> = histogram
        .cumulative
        .iter()
        .map(|&(bound_micros, cumulative)| {
            let bound = if bound_micros == u64::MAX {
                f64::INFINITY
            } else {
                bound_micros as f64 / MICROS_PER_SECOND
            };
            let in_bucket = cumulative - previous;
            previous = cumulative;
            (bound, in_bucket)
        })
        .collect();
    let metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    let mut metric = metric;
    metric.encode_histogram::<NoLabelSet>(
        histogram.sum_micros as f64 / MICROS_PER_SECOND,
        histogram.count,
        &buckets,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_one_counter_family_and_a_gauge() {
        let stats = Arc::new(Stats::default());
        stats.limited(Limit::Requests);
        stats.limited(Limit::Requests);
        stats.limited(Limit::AuthFailures);
        let throttled = stats.user_throttled();
        let body = render(&stats).expect("render");
        for line in [
            "# TYPE proxy_limited_total counter",
            "proxy_limited_total{limit=\"requests\"} 2",
            "proxy_limited_total{limit=\"connections\"} 0",
            "proxy_limited_total{limit=\"bandwidth\"} 0",
            "proxy_limited_total{limit=\"auth_failures\"} 1",
            "proxy_users_throttled 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line:?} missing from:\n{body}"
            );
        }
        drop(throttled);
        stats
            .inspection()
            .leaf_generated(std::time::Duration::from_millis(2));
        stats.inspection().leaf_cached();
        let body = render(&stats).expect("render");
        for line in [
            "proxy_inspection_leaves_generated_total 1",
            "proxy_inspection_leaves_cached_total 1",
            "proxy_inspection_leaf_seconds_count 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line:?} missing from:\n{body}"
            );
        }
        let body = render(&stats).expect("render");
        assert!(body.lines().any(|l| l == "proxy_users_throttled 0"));
    }
}
