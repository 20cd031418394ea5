//! The access record and its two line formats.
//!
//! Owns what one access-log line says about a finished request or a closed CONNECT tunnel,
//! and how it is spelled: Squid's native `access.log` layout (so existing Squid log tools read
//! it) with four trailing fields of ours, or one JSON object per line. Pure formatting: no I/O,
//! no clock reads. The connection code fills an [`AccessRecord`]; nothing here sees headers,
//! so a password can never reach the log unless a caller puts one in `user`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::stats::Outcome;

/// Whether the response came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache without contacting the origin.
    Hit,
    /// Cacheable, not in the cache: fetched from the origin.
    Miss,
    /// The cache was not consulted (tunnels, refused requests, uncacheable methods).
    None,
}

impl CacheResult {
    /// `HIT`, `MISS` or `-` as written in the JSON `cache` field and the summary.
    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::None => "-",
        }
    }
}

/// One finished request or closed tunnel, filled in by the connection code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the request head (or CONNECT) started arriving.
    pub start: SystemTime,
    /// From `start` until the response was fully sent or the tunnel closed.
    pub duration: Duration,
    pub client: SocketAddr,
    /// The authenticated proxy user; `None` when there was no (valid) login. Never a password.
    pub user: Option<String>,
    /// Request method as received (`GET`, `CONNECT`, …); `-` if the head never parsed.
    pub method: String,
    /// Absolute URL for forwarded requests, `host:port` for CONNECT.
    pub target: String,
    /// Status sent to the client (200 for an established tunnel).
    pub status: u16,
    /// Every byte written to the client: heads and bodies, or tunnel download.
    pub bytes_to_client: u64,
    /// Every byte read from the client: heads and bodies, or tunnel upload.
    pub bytes_from_client: u64,
    pub cache: CacheResult,
    /// The address actually connected to, if any.
    pub upstream: Option<SocketAddr>,
    /// How it was reached, as Squid's hierarchy code (`HIER_DIRECT`); shown with
    /// `upstream`.
    pub hierarchy: &'static str,
    /// The parent proxy the request went through (`FIRSTUP_PARENT/name` in the Squid
    /// line, `parent` in JSON); `None` for a direct route.
    pub parent: Option<Arc<str>>,
    /// Cut short by the proxy at the end of the shutdown grace: Squid's `_ABORTED`
    /// suffix on the result code (`TCP_TUNNEL_ABORTED`).
    pub cut: bool,
    pub outcome: Outcome,
    /// The access-policy rule that allowed or refused the request, as the policy names
    /// it (`"staff" (rule 2, proxy-server.toml:31)`); `None` when no rule decided.
    pub rule: Option<Arc<str>>,
    /// The server name a tunnel's TLS ClientHello asked for (SNI), when it sent one.
    pub sni: Option<Box<str>>,
    /// The protocols that ClientHello offered (ALPN), comma-separated.
    pub alpn: Option<Box<str>>,
}

/// Squid's "result code" (the part before `/status`) for a record. Squid spells a cache hit
/// `TCP_HIT`, any fetch from the origin `TCP_MISS`, an ACL or auth refusal `TCP_DENIED`, an
/// established CONNECT `TCP_TUNNEL`, and a request refused before it was understood
/// `NONE_NONE` (Squid 5 and later; older releases wrote `NONE`).
/// A transaction the proxy cut short (`cut`) gets Squid's `_ABORTED` suffix.
pub fn squid_result_code(record: &AccessRecord) -> &'static str {
    match (record.outcome, record.cut) {
        (Outcome::Tunnel, false) => "TCP_TUNNEL",
        (Outcome::Tunnel, true) => "TCP_TUNNEL_ABORTED",
        (Outcome::Blocked | Outcome::AuthFailed, _) => "TCP_DENIED",
        (Outcome::Malformed, _) => "NONE_NONE",
        (Outcome::Allowed | Outcome::UpstreamError, cut) => match (record.cache, cut) {
            (CacheResult::Hit, false) => "TCP_HIT",
            (CacheResult::Hit, true) => "TCP_HIT_ABORTED",
            (CacheResult::Miss | CacheResult::None, false) => "TCP_MISS",
            (CacheResult::Miss | CacheResult::None, true) => "TCP_MISS_ABORTED",
        },
    }
}

/// Appends the record as one Squid native line (with `\n`) to `out`:
///
/// `time.ms elapsed client code/status bytes method URL user hierarchy/peer type from_client outcome rule sni`
///
/// The first ten fields are Squid's built-in `squid` logformat
/// (`%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`): the time is when the
/// transaction finished, as in Squid; `type` (the reply's content type) is not tracked and is
/// always `-`. Squid has no slot for request bytes, our outcome label, the policy rule or
/// a tunnel's TLS server name, so they follow as fields 11 to 14 (the rule and the name
/// percent-encoded like the other free-text fields, `-` when there is none); tools that
/// split on whitespace and read ten fields ignore them.
pub fn write_squid_line(record: &AccessRecord, out: &mut Vec<u8>) {
    let finished = record.start + record.duration;
    let (seconds, millis) = unix_seconds_millis(finished);
    // Numbers and addresses by hand, straight into `out`: `format!` machinery was a sixth
    // of S1's user-space instructions (docs/performance.md, "S1 overhead").
    push_number(out, seconds, 1, b'0');
    out.push(b'.');
    push_number(out, millis.into(), 3, b'0');
    out.push(b' ');
    let elapsed = u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX);
    push_number(out, elapsed, 6, b' ');
    out.push(b' ');
    push_ip(out, record.client.ip());
    out.push(b' ');
    out.extend_from_slice(squid_result_code(record).as_bytes());
    out.push(b'/');
    push_number(out, record.status.into(), 3, b'0');
    out.push(b' ');
    push_number(out, record.bytes_to_client, 1, b'0');
    out.push(b' ');
    push_token(out, &record.method);
    out.push(b' ');
    push_token(out, &record.target);
    out.push(b' ');
    push_token(out, record.user.as_deref().unwrap_or(""));
    out.push(b' ');
    match (&record.parent, record.upstream) {
        (Some(parent), _) => {
            out.extend_from_slice(record.hierarchy.as_bytes());
            out.push(b'/');
            push_token(out, parent);
        }
        (None, Some(peer)) => {
            out.extend_from_slice(record.hierarchy.as_bytes());
            out.push(b'/');
            push_ip(out, peer.ip());
        }
        (None, None) => out.extend_from_slice(b"HIER_NONE/-"),
    }
    out.extend_from_slice(b" - ");
    push_number(out, record.bytes_from_client, 1, b'0');
    out.push(b' ');
    out.extend_from_slice(record.outcome.label().as_bytes());
    out.push(b' ');
    push_token(out, record.rule.as_deref().unwrap_or(""));
    out.push(b' ');
    push_token(out, record.sni.as_deref().unwrap_or(""));
    out.push(b'\n');
}

/// `n` in decimal, padded on the left with `pad` to at least `width` digits (what
/// `{n:0width$}` and `{n:>width$}` write).
fn push_number(out: &mut Vec<u8>, n: u64, width: usize, pad: u8) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    out.extend(std::iter::repeat_n(pad, width.saturating_sub(digits.len())));
    out.extend_from_slice(digits);
}

/// An address as `Display` writes it; IPv4 by hand, IPv6 (rare here) through `Display`.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_number(out, octet.into(), 1, b'0');
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends a client-supplied value as one whitespace-free field: `-` when empty; spaces,
/// control bytes and non-ASCII percent-encoded (as Squid does for its logged fields) so a
/// hostile URL or user name cannot add fields or lines.
fn push_token(line: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        line.push(b'-');
        return;
    }
    // Runs of plain bytes are copied whole: a byte at a time cost S1 more than the rest of
    // the line's formatting.
    let mut rest = value.as_bytes();
    while let Some(at) = rest.iter().position(|byte| !byte.is_ascii_graphic()) {
        line.extend_from_slice(&rest[..at]);
        let _ = write!(line, "%{:02X}", rest[at]);
        rest = &rest[at + 1..];
    }
    line.extend_from_slice(rest);
}

/// The JSON shape of one line; field names are the documented contract.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    duration_ms: u64,
    client: String,
    user: Option<&'a str>,
    method: &'a str,
    target: &'a str,
    status: u16,
    bytes_to_client: u64,
    bytes_from_client: u64,
    cache: &'static str,
    upstream: Option<String>,
    /// Squid's hierarchy code: `HIER_DIRECT`, `FIRSTUP_PARENT` or `HIER_NONE`.
    hierarchy: &'static str,
    parent: Option<&'a str>,
    outcome: &'static str,
    squid_code: &'static str,
    rule: Option<&'a str>,
    sni: Option<&'a str>,
    alpn: Option<&'a str>,
}

/// Appends the record as one JSON object and `\n`. `serde_json` does the string escaping
/// (quotes, backslashes, control characters, U+2028/9 stay legal JSON), which is the part a
/// hand-written encoder gets wrong.
pub fn write_json_line(record: &AccessRecord, out: &mut Vec<u8>) {
    let line = JsonLine {
        time: rfc3339_millis(record.start),
        duration_ms: u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX),
        client: record.client.to_string(),
        user: record.user.as_deref(),
        method: &record.method,
        target: &record.target,
        status: record.status,
        bytes_to_client: record.bytes_to_client,
        bytes_from_client: record.bytes_from_client,
        cache: record.cache.label(),
        upstream: record.upstream.map(|peer| peer.to_string()),
        hierarchy: match record.upstream {
            Some(_) => record.hierarchy,
            None => "HIER_NONE",
        },
        parent: record.parent.as_deref(),
        outcome: record.outcome.label(),
        squid_code: squid_result_code(record),
        rule: record.rule.as_deref(),
        sni: record.sni.as_deref(),
        alpn: record.alpn.as_deref(),
    };
    // Serialising plain strings and integers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

fn unix_seconds_millis(time: SystemTime) -> (u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_millis())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (RFC 3339 §5.6), computed without a date crate using the
/// days-to-civil conversion for the proleptic Gregorian calendar.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let (seconds, millis) = unix_seconds_millis(time);
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
