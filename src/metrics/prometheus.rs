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

use crate::stats::{Outcome, Snapshot, Stats};

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
            "proxy_headers_rejected",
            "Connections closed for a missing, malformed or late PROXY-protocol header.",
            s.proxy_headers_rejected,
        )?;
        encode_durations(e, &s)
    }
}

/// One counter family, `proxy_requests_total{outcome="…"}`, so dashboards can sum or ratio
/// outcomes without knowing the list.
fn encode_requests(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "requests",
        "Finished requests and closed tunnels, by outcome.",
        None,
        MetricType::Counter,
    )?;
    for outcome in Outcome::ALL {
        let metric = ConstCounter::new(snapshot.requests.get(outcome));
        metric.encode(family.encode_family(&[("outcome", outcome.label())])?)?;
    }
    Ok(())
}

fn encode_durations(encoder: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let histogram = &snapshot.request_durations;
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
    let metric = encoder.encode_descriptor(
        "request_duration",
        "Time from request start to the last byte sent (tunnels excluded).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    let mut metric = metric;
    metric.encode_histogram::<NoLabelSet>(
        histogram.sum_micros as f64 / MICROS_PER_SECOND,
        histogram.count,
        &buckets,
        None,
    )
}
