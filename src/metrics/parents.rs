//! Parent proxies in `/metrics`: `proxy_parent_up{parent}` (1 when it is not backed off),
//! `proxy_parent_failures_total{parent}` (connections to it that failed) and
//! `proxy_parent_requests_total{parent}` (requests and tunnels that went through it).
//! Nothing is written when no parent is configured.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::stats::ParentSnapshot;

pub fn encode(encoder: &mut DescriptorEncoder, parents: &[ParentSnapshot]) -> fmt::Result {
    if parents.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        "parent_up",
        "Whether each parent proxy is up (1) or backed off after a failure (0).",
        None,
        MetricType::Gauge,
    )?;
    for parent in parents {
        let metric = ConstGauge::new(i64::from(parent.up));
        metric.encode(family.encode_family(&[("parent", parent.name.as_str())])?)?;
    }
    let counters = [
        (
            "parent_failures",
            "Connections to each parent proxy that failed (refused, reset, timed out).",
            (|p: &ParentSnapshot| p.failures) as fn(&ParentSnapshot) -> u64,
        ),
        (
            "parent_requests",
            "Requests and tunnels that went through each parent proxy.",
            |p: &ParentSnapshot| p.requests,
        ),
    ];
    for (name, help, value) in counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for parent in parents {
            let metric = ConstCounter::new(value(parent));
            metric.encode(family.encode_family(&[("parent", parent.name.as_str())])?)?;
        }
    }
    Ok(())
}
