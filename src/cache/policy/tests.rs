//! Unit tests for the RFC 9111 rules in `policy`, with fixed instants instead of a clock.

use super::*;
use crate::cache::directives::format_http_date;

/// A fixed "now": 2026-01-01T00:00:00Z.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn at(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        t0() + Duration::from_secs(seconds as u64)
    } else {
        t0() - Duration::from_secs(seconds.unsigned_abs())
    }
}

fn date(seconds: i64) -> String {
    format_http_date(at(seconds))
}

fn headers(fields: &[(&str, &str)]) -> Headers {
    fields
        .iter()
        .map(|(n, v)| Header::new(n.to_string(), v.to_string()))
        .collect()
}

fn storable(
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
) -> Result<(), NotStorable> {
    check_storable("GET", &headers(request), status, &headers(response))
}

#[test]
fn storable_cases() {
    let fresh = [("cache-control", "max-age=60")];
    assert_eq!(storable(&[], 200, &fresh), Ok(()));
    assert_eq!(
        storable(&[], 200, &[]),
        Ok(()),
        "200 is heuristically cacheable"
    );
    assert_eq!(
        storable(&[], 302, &fresh),
        Ok(()),
        "explicit freshness makes 302 storable"
    );
    assert_eq!(storable(&[], 302, &[]), Err(NotStorable::NoFreshness));
    assert_eq!(storable(&[], 500, &[]), Err(NotStorable::NoFreshness));
    assert_eq!(storable(&[], 200, &[("cache-control", "public")]), Ok(()));
}

#[test]
fn not_storable_cases() {
    let fresh = ("cache-control", "max-age=60");
    let get = headers(&[]);
    let response = headers(&[fresh]);
    assert_eq!(
        check_storable("POST", &get, 200, &response),
        Err(NotStorable::Method)
    );
    assert_eq!(
        check_storable("HEAD", &get, 200, &response),
        Err(NotStorable::Method)
    );
    assert_eq!(storable(&[], 206, &[fresh]), Err(NotStorable::Status));
    assert_eq!(storable(&[], 304, &[fresh]), Err(NotStorable::Status));
    assert_eq!(storable(&[], 101, &[fresh]), Err(NotStorable::Status));
    assert_eq!(
        storable(&[("cache-control", "no-store")], 200, &[fresh]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        storable(&[], 200, &[("cache-control", "max-age=60, no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        storable(&[], 200, &[("cache-control", "private, max-age=60")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        storable(&[], 200, &[("cache-control", "private=\"x\"")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        storable(&[("authorization", "Basic eA==")], 200, &[fresh]),
        Err(NotStorable::Authorization)
    );
    assert_eq!(
        storable(&[], 200, &[fresh, ("vary", "*")]),
        Err(NotStorable::VaryStar)
    );
}

#[test]
fn authorization_allowed_by_response() {
    let auth = [("authorization", "Basic eA==")];
    for cc in ["public", "s-maxage=60", "must-revalidate, max-age=5"] {
        assert_eq!(
            storable(&auth, 200, &[("cache-control", cc)]),
            Ok(()),
            "{cc}"
        );
    }
}

#[test]
fn must_understand_overrides_no_store_for_known_status() {
    let cc = [("cache-control", "must-understand, no-store, max-age=60")];
    assert_eq!(storable(&[], 200, &cc), Ok(()));
    assert_eq!(storable(&[], 299, &cc), Err(NotStorable::Status));
}

fn freshness(response: &[(&str, &str)]) -> Freshness {
    Freshness::new(200, &headers(response), t0(), t0())
}

#[test]
fn lifetime_precedence() {
    let d = date(0);
    let expires = date(100);
    let all = [
        ("date", d.as_str()),
        ("expires", expires.as_str()),
        ("cache-control", "max-age=50, s-maxage=20"),
    ];
    assert_eq!(freshness(&all).lifetime, Duration::from_secs(20));
    assert_eq!(freshness(&all[..2]).lifetime, Duration::from_secs(100));
    let max_age = [
        ("date", d.as_str()),
        ("expires", expires.as_str()),
        ("cache-control", "max-age=50"),
    ];
    assert_eq!(freshness(&max_age).lifetime, Duration::from_secs(50));
}

#[test]
fn expires_relative_to_date_and_invalid_expires() {
    let d = date(-1000);
    let expires = date(-900);
    // Expires - Date = 100 s even though both are in the past of our clock.
    assert_eq!(
        freshness(&[("date", &d), ("expires", &expires)]).lifetime,
        Duration::from_secs(100)
    );
    assert_eq!(freshness(&[("expires", "0")]).lifetime, Duration::ZERO);
}

#[test]
fn heuristic_is_a_tenth_of_last_modified_age() {
    let d = date(0);
    let lm = date(-10_000);
    let f = freshness(&[("date", &d), ("last-modified", &lm)]);
    assert_eq!(f.lifetime, Duration::from_secs(1_000));
    assert!(f.is_fresh(at(999)));
    assert!(!f.is_fresh(at(1_000)));
    // Not heuristically cacheable without public.
    let f = Freshness::new(
        302,
        &headers(&[("date", &d), ("last-modified", &lm)]),
        t0(),
        t0(),
    );
    assert_eq!(f.lifetime, Duration::ZERO);
}

#[test]
fn age_calculation_follows_rfc9111_4_2_3() {
    // Requested at -2, received at 0; the origin says Age 10 and Date -5.
    let d = date(-5);
    let h = headers(&[("date", &d), ("age", "10"), ("cache-control", "max-age=60")]);
    let f = Freshness::new(200, &h, at(-2), t0());
    // corrected_age_value = 10 + 2 = 12 > apparent_age 5.
    assert_eq!(f.initial_age, Duration::from_secs(12));
    assert_eq!(f.age(at(30)), Duration::from_secs(42));
    assert!(f.is_fresh(at(47)));
    assert!(!f.is_fresh(at(48)));

    // A Date far in the past (apparent age) dominates a small Age.
    let d = date(-100);
    let f = Freshness::new(200, &headers(&[("date", &d), ("age", "3")]), t0(), t0());
    assert_eq!(f.initial_age, Duration::from_secs(100));
    // An invalid Age is ignored.
    let f = Freshness::new(200, &headers(&[("age", "soon")]), t0(), t0());
    assert_eq!(f.initial_age, Duration::ZERO);
}

#[test]
fn request_directives_force_revalidation() {
    let f = freshness(&[("cache-control", "max-age=100")]);
    let plain = RequestDirectives::default();
    let parse = |cc: &str| RequestDirectives::parse(&headers(&[("cache-control", cc)]));
    assert!(may_serve_fresh(&f, &plain, at(10)));
    assert!(!may_serve_fresh(&f, &parse("no-cache"), at(10)));
    assert!(!may_serve_fresh(&f, &parse("max-age=0"), t0()));
    assert!(may_serve_fresh(&f, &parse("max-age=20"), at(10)));
    assert!(!may_serve_fresh(&f, &parse("max-age=5"), at(10)));
    assert!(may_serve_fresh(&f, &parse("min-fresh=90"), at(10)));
    assert!(!may_serve_fresh(&f, &parse("min-fresh=91"), at(10)));
    assert!(!may_serve_fresh(&f, &plain, at(100)));
    let pragma = RequestDirectives::parse(&headers(&[("pragma", "no-cache")]));
    assert!(!may_serve_fresh(&f, &pragma, at(10)));
}

#[test]
fn response_no_cache_always_revalidates() {
    let f = freshness(&[("cache-control", "no-cache, max-age=100")]);
    assert!(!may_serve_fresh(&f, &RequestDirectives::default(), t0()));
}

#[test]
fn validators_from_etag_and_last_modified() {
    let v = validators(&headers(&[("ETag", "\"v1\""), ("Last-Modified", "x")]));
    let names: Vec<&str> = v.iter().map(Header::name_str).collect();
    assert_eq!(names, ["If-None-Match", "If-Modified-Since"]);
    assert_eq!(&v[0].value[..], b"\"v1\"");
    assert!(validators(&headers(&[("content-type", "a")])).is_empty());
}

#[test]
fn stored_fields_drop_hop_by_hop() {
    let h = headers(&[
        ("Connection", "x-secret"),
        ("X-Secret", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Age", "4"),
        ("Content-Type", "text/plain"),
    ]);
    let stored = storable_fields(&h);
    let kept: Vec<&str> = stored.iter().map(Header::name_str).collect();
    assert_eq!(kept, ["Content-Type"]);
}

#[test]
fn date_added_when_missing() {
    let stored = fields_to_store(&headers(&[("content-type", "a")]), t0());
    assert_eq!(stored.get_str("date"), Some(date(0).as_str()));
    let d = date(-5);
    let stored = fields_to_store(&headers(&[("date", &d)]), t0());
    assert_eq!(stored.get_all("date").count(), 1);
    assert_eq!(stored.get_str("date"), Some(d.as_str()));
}

#[test]
fn merge_304_replaces_fields_but_not_content_length() {
    let stored = headers(&[
        ("Content-Type", "text/plain"),
        ("ETag", "\"v1\""),
        ("Cache-Control", "max-age=1"),
        ("X-Old", "keep"),
    ]);
    let not_modified = headers(&[
        ("ETag", "\"v1\""),
        ("Cache-Control", "max-age=100"),
        ("Content-Length", "0"),
        ("X-New", "added"),
    ]);
    assert!(not_modified_matches(&stored, &not_modified));
    let merged = merge_not_modified(&stored, &not_modified);
    assert_eq!(merged.get_str("cache-control"), Some("max-age=100"));
    assert_eq!(merged.get_str("x-old"), Some("keep"));
    assert_eq!(merged.get_str("x-new"), Some("added"));
    assert_eq!(merged.get_str("content-type"), Some("text/plain"));
    assert!(!merged.contains("content-length"));
    assert_eq!(merged.get_all("etag").count(), 1);
}

#[test]
fn validator_matching_for_304() {
    let stored = headers(&[("ETag", "W/\"v1\""), ("Last-Modified", "Mon")]);
    assert!(not_modified_matches(
        &stored,
        &headers(&[("etag", "W/\"v1\"")])
    ));
    assert!(
        !not_modified_matches(&stored, &headers(&[("etag", "\"v1\"")])),
        "strong needs exact"
    );
    assert!(!not_modified_matches(
        &stored,
        &headers(&[("etag", "\"v2\"")])
    ));
    assert!(not_modified_matches(
        &stored,
        &headers(&[("last-modified", "Mon")])
    ));
    assert!(!not_modified_matches(
        &stored,
        &headers(&[("last-modified", "Tue")])
    ));
    assert!(not_modified_matches(&stored, &headers(&[])));
}
