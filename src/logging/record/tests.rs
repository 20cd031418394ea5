use super::*;

/// 2023-11-14T22:13:20.250Z
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
}

fn forwarded() -> AccessRecord {
    AccessRecord {
        start: start(),
        duration: Duration::from_millis(1234),
        client: "192.0.2.7:50123".parse().expect("addr"),
        user: Some("alice".to_owned()),
        method: "GET".to_owned(),
        target: "http://example.com/index.html".to_owned(),
        status: 200,
        bytes_to_client: 5120,
        bytes_from_client: 312,
        cache: CacheResult::Miss,
        upstream: Some("198.51.100.3:80".parse().expect("addr")),
        hierarchy: "HIER_DIRECT",
        parent: None,
        cut: false,
        outcome: Outcome::Allowed,
        rule: None,
        sni: None,
        alpn: None,
    }
}

fn squid(record: &AccessRecord) -> String {
    let mut out = Vec::new();
    write_squid_line(record, &mut out);
    String::from_utf8(out).expect("utf-8")
}

fn json(record: &AccessRecord) -> serde_json::Value {
    let mut out = Vec::new();
    write_json_line(record, &mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    assert_eq!(out.last(), Some(&b'\n'));
    serde_json::from_slice(&out).expect("valid JSON")
}

#[test]
fn forwarded_request_squid_line_has_every_field_in_place() {
    assert_eq!(
        squid(&forwarded()),
        "1700000001.484   1234 192.0.2.7 TCP_MISS/200 5120 GET http://example.com/index.html \
         alice HIER_DIRECT/198.51.100.3 - 312 allowed - -\n"
    );
}

#[test]
fn cache_hit_has_no_peer() {
    let record = AccessRecord {
        duration: Duration::from_millis(3),
        cache: CacheResult::Hit,
        upstream: None,
        hierarchy: "HIER_DIRECT",
        parent: None,
        user: None,
        ..forwarded()
    };
    assert_eq!(
        squid(&record),
        "1700000000.253      3 192.0.2.7 TCP_HIT/200 5120 GET http://example.com/index.html \
         - HIER_NONE/- - 312 allowed - -\n"
    );
}

#[test]
fn a_parent_is_named_in_place_of_the_peer() {
    let record = AccessRecord {
        hierarchy: "FIRSTUP_PARENT",
        parent: Some("corp backup".into()),
        ..forwarded()
    };
    assert!(squid(&record).contains(" alice FIRSTUP_PARENT/corp%20backup - 312 "));
    let value = json(&record);
    assert_eq!(value["hierarchy"], "FIRSTUP_PARENT");
    assert_eq!(value["parent"], "corp backup");
}

#[test]
fn tunnel_logs_both_directions() {
    let record = AccessRecord {
        method: "CONNECT".to_owned(),
        target: "example.com:443".to_owned(),
        duration: Duration::from_secs(61),
        bytes_to_client: 1_048_576,
        bytes_from_client: 4_096,
        cache: CacheResult::None,
        upstream: Some("[2001:db8::1]:443".parse().expect("addr")),
        hierarchy: "HIER_DIRECT",
        parent: None,
        outcome: Outcome::Tunnel,
        ..forwarded()
    };
    let line = squid(&record);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], "TCP_TUNNEL/200");
    assert_eq!(fields[4], "1048576");
    assert_eq!(fields[5..7], ["CONNECT", "example.com:443"]);
    assert_eq!(fields[8], "HIER_DIRECT/2001:db8::1");
    assert_eq!(fields[10..], ["4096", "tunnel", "-", "-"]);
    let value = json(&record);
    assert_eq!(value["bytes_to_client"], 1_048_576);
    assert_eq!(value["bytes_from_client"], 4_096);
    assert_eq!(value["upstream"], "[2001:db8::1]:443");
    assert_eq!(value["duration_ms"], 61_000);
}

#[test]
fn refusals_and_failures_map_to_squid_codes() {
    let cases = [
        (Outcome::Blocked, 403, "TCP_DENIED/403", "blocked"),
        (Outcome::AuthFailed, 407, "TCP_DENIED/407", "auth_failed"),
        (
            Outcome::UpstreamError,
            502,
            "TCP_MISS/502",
            "upstream_error",
        ),
        (
            Outcome::UpstreamError,
            504,
            "TCP_MISS/504",
            "upstream_error",
        ),
        (Outcome::Malformed, 400, "NONE_NONE/400", "malformed"),
    ];
    for (outcome, status, code, label) in cases {
        let record = AccessRecord {
            outcome,
            status,
            cache: CacheResult::None,
            upstream: None,
            hierarchy: "HIER_DIRECT",
            parent: None,
            user: None,
            ..forwarded()
        };
        let line = squid(&record);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 14, "{line}");
        assert_eq!(fields[3], code);
        assert_eq!(fields[7], "-", "no user");
        assert_eq!(fields[8], "HIER_NONE/-");
        assert_eq!(fields[11], label);
        let value = json(&record);
        assert_eq!(value["status"], status);
        assert_eq!(value["outcome"], label);
        assert!(value["user"].is_null());
        assert!(value["upstream"].is_null());
    }
}

/// A tunnel or request cut at the end of the shutdown grace says so with Squid's
/// `_ABORTED` suffix, in both formats; nothing else changes.
#[test]
fn a_cut_exchange_is_aborted_in_the_result_code() {
    let cases = [
        (
            Outcome::Tunnel,
            CacheResult::None,
            "TCP_TUNNEL_ABORTED/200",
            "tunnel",
        ),
        (
            Outcome::Allowed,
            CacheResult::Miss,
            "TCP_MISS_ABORTED/200",
            "allowed",
        ),
        (
            Outcome::Allowed,
            CacheResult::Hit,
            "TCP_HIT_ABORTED/200",
            "allowed",
        ),
    ];
    for (outcome, cache, code, label) in cases {
        let record = AccessRecord {
            outcome,
            cache,
            cut: true,
            ..forwarded()
        };
        let line = squid(&record);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 14, "{line}");
        assert_eq!(fields[3], code);
        assert_eq!(fields[11], label);
        assert_eq!(json(&record)["squid_code"], code.split('/').next().unwrap());
    }
}

#[test]
fn hostile_values_stay_one_field_and_one_line() {
    let record = AccessRecord {
        method: String::new(),
        target: "http://evil.example/a b\r\nFAKE 1 2 3\t\u{e9}".to_owned(),
        user: Some("bob smith".to_owned()),
        outcome: Outcome::Malformed,
        ..forwarded()
    };
    let line = squid(&record);
    assert_eq!(line.matches('\n').count(), 1);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 14, "{line}");
    assert_eq!(fields[5], "-");
    assert_eq!(
        fields[6],
        "http://evil.example/a%20b%0D%0AFAKE%201%202%203%09%C3%A9"
    );
    assert_eq!(fields[7], "bob%20smith");

    let value = json(&record);
    assert_eq!(
        value["target"],
        "http://evil.example/a b\r\nFAKE 1 2 3\t\u{e9}"
    );
    assert_eq!(value["user"], "bob smith");
}

#[test]
fn json_line_carries_every_field() {
    let value = json(&forwarded());
    let expected = serde_json::json!({
        "time": "2023-11-14T22:13:20.250Z",
        "duration_ms": 1234,
        "client": "192.0.2.7:50123",
        "user": "alice",
        "method": "GET",
        "target": "http://example.com/index.html",
        "status": 200,
        "bytes_to_client": 5120,
        "bytes_from_client": 312,
        "cache": "MISS",
        "upstream": "198.51.100.3:80",
        "hierarchy": "HIER_DIRECT",
        "parent": null,
        "outcome": "allowed",
        "squid_code": "TCP_MISS",
            "rule": null,
            "sni": null,
            "alpn": null,
    });
    assert_eq!(value, expected);
}

#[test]
fn rfc3339_handles_epoch_leap_days_and_century_rules() {
    let at = |secs: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59.000Z");
    assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_234_567_890_123)),
        "2009-02-13T23:31:30.123Z"
    );
}

#[test]
fn the_deciding_rule_is_the_last_squid_field_and_a_json_key() {
    let record = AccessRecord {
        outcome: Outcome::Blocked,
        status: 403,
        rule: Some("\"no ads\" (rule 1, p.toml:4)".into()),
        ..forwarded()
    };
    let line = squid(&record);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 14, "{line}");
    assert_eq!(fields[12], "\"no%20ads\"%20(rule%201,%20p.toml:4)");
    assert_eq!(json(&record)["rule"], "\"no ads\" (rule 1, p.toml:4)");
    assert!(json(&forwarded())["rule"].is_null());
}

/// The hand-written numbers and addresses of the Squid line say what `format!` would.
#[test]
fn squid_line_numbers_and_addresses_match_format() {
    let cases: [(u64, &str, u16, u64); 4] = [
        (0, "0.0.0.0:1", 0, 0),
        (7, "[2001:db8::1]:443", 99, 18_446_744_073_709_551_615),
        (12_345_678, "255.255.255.255:9", 504, 10),
        (999_999, "[::ffff:192.0.2.1]:80", 200, 1),
    ];
    for (millis, client, status, bytes) in cases {
        let record = AccessRecord {
            duration: Duration::from_millis(millis),
            client: client.parse().expect("addr"),
            status,
            bytes_to_client: bytes,
            bytes_from_client: bytes / 3,
            ..forwarded()
        };
        let (seconds, frac) = unix_seconds_millis(record.start + record.duration);
        let expected = format!(
            "{seconds}.{frac:03} {millis:>6} {} TCP_MISS/{status:03} {bytes} GET \
             http://example.com/index.html alice HIER_DIRECT/198.51.100.3 - {} allowed - -\n",
            record.client.ip(),
            bytes / 3,
        );
        assert_eq!(squid(&record), expected);
    }
}

#[test]
fn a_tunnel_s_tls_name_is_the_fourteenth_field_and_json_keys() {
    let record = AccessRecord {
        method: "CONNECT".to_owned(),
        target: "allowed.example:443".to_owned(),
        outcome: Outcome::Blocked,
        status: 403,
        sni: Some("fronted.example".into()),
        alpn: Some("h2,http/1.1".into()),
        ..forwarded()
    };
    let line = squid(&record);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 14, "{line}");
    assert_eq!(fields[3], "TCP_DENIED/403");
    assert_eq!(
        (fields[6], fields[13]),
        ("allowed.example:443", "fronted.example")
    );
    let value = json(&record);
    assert_eq!(
        (value["sni"].as_str(), value["alpn"].as_str()),
        (Some("fronted.example"), Some("h2,http/1.1"))
    );
}
