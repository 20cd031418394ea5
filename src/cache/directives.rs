//! Parsing of the header fields the cache rules read: `Cache-Control` (RFC 9111 §5.2) in
//! requests and responses, `Pragma: no-cache` (§5.4), delta-seconds (§1.2.2) and
//! HTTP-dates (RFC 9110 §5.6.7). Pure functions over [`Headers`]; no decisions here.

use std::time::SystemTime;

use crate::http::Headers;

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_SECONDS_CAP: u64 = 1 << 31;

/// One `Cache-Control` directive: lower-cased name, value unquoted if it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    name: String,
    value: Option<String>,
}

/// Splits every `Cache-Control` field into directives, honouring quoted strings so a
/// comma inside `no-cache="a, b"` does not split the list (RFC 9110 §5.6.4).
fn parse_cache_control(headers: &Headers) -> Vec<Directive> {
    let mut out = Vec::new();
    for field in headers.get_all("cache-control") {
        let text = String::from_utf8_lossy(field);
        let mut rest = text.as_ref();
        while !rest.is_empty() {
            let (item, tail) = split_item(rest);
            rest = tail;
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (item, None),
            };
            out.push(Directive {
                name: name.to_ascii_lowercase(),
                value,
            });
        }
    }
    out
}

/// The text up to the first comma outside a quoted string, and what follows it.
fn split_item(text: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    }
}

/// Parses delta-seconds (RFC 9111 §1.2.2). `None` when the value is not digits, which
/// the callers treat as "stale" (§4.2.1: invalid freshness information).
pub fn delta_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<u64>()
            .map_or(DELTA_SECONDS_CAP, |v| v.min(DELTA_SECONDS_CAP)),
    )
}

/// Parses an HTTP-date in any of the three formats RFC 9110 §5.6.7 requires recipients
/// to accept; `None` for anything else (callers treat a bad `Expires` as already expired).
pub fn http_date(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

/// Formats a time as an IMF-fixdate (RFC 9110 §5.6.7).
pub fn format_http_date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// The response directives a shared cache acts on (RFC 9111 §5.2.2). A freshness value
/// that is present but invalid reads as `Some(0)`: RFC 9111 §4.2.1 lets a cache treat
/// invalid freshness information as stale. Only the first occurrence of a duplicated
/// directive counts (§4.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl ResponseDirectives {
    pub fn parse(headers: &Headers) -> ResponseDirectives {
        let mut d = ResponseDirectives::default();
        for directive in parse_cache_control(headers) {
            let seconds = || {
                directive
                    .value
                    .as_deref()
                    .and_then(delta_seconds)
                    .or(Some(0))
            };
            match directive.name.as_str() {
                "no-store" => d.no_store = true,
                // A qualified no-cache="field" may be treated as unqualified (§5.2.2.4).
                "no-cache" => d.no_cache = true,
                // Same for private="field" (§5.2.2.7): a shared cache then stores nothing.
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "max-age" if d.max_age.is_none() => d.max_age = seconds(),
                "s-maxage" if d.s_maxage.is_none() => d.s_maxage = seconds(),
                _ => {}
            }
        }
        // Pragma is not read here: RFC 9111 §5.4 gives it a meaning in requests only.
        d
    }
}

/// The request directives a cache acts on (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    pub no_store: bool,
    pub no_cache: bool,
    pub only_if_cached: bool,
    pub max_age: Option<u64>,
    pub min_fresh: Option<u64>,
}

impl RequestDirectives {
    pub fn parse(headers: &Headers) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        for directive in parse_cache_control(headers) {
            let seconds = || directive.value.as_deref().and_then(delta_seconds);
            match directive.name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "only-if-cached" => d.only_if_cached = true,
                // An invalid request max-age is read as 0: the safe side is revalidating.
                "max-age" if d.max_age.is_none() => d.max_age = Some(seconds().unwrap_or(0)),
                "min-fresh" if d.min_fresh.is_none() => d.min_fresh = seconds(),
                _ => {}
            }
        }
        // RFC 9111 §5.4: Pragma counts only when the request has no Cache-Control.
        if !headers.contains("cache-control") && headers.has_token("pragma", "no-cache") {
            d.no_cache = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn headers(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }

    #[test]
    fn response_directives_across_fields_and_case() {
        let h = headers(&[
            ("Cache-Control", "Public, MAX-AGE=60"),
            (
                "cache-control",
                "s-maxage=\"120\", no-cache=\"Set-Cookie, X-A\", must-revalidate",
            ),
        ]);
        let d = ResponseDirectives::parse(&h);
        assert!(d.public && d.no_cache && d.must_revalidate && !d.private);
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(120));
    }

    #[test]
    fn first_duplicate_wins_and_invalid_is_stale() {
        let d = ResponseDirectives::parse(&headers(&[("cache-control", "max-age=10, max-age=99")]));
        assert_eq!(d.max_age, Some(10));
        let d = ResponseDirectives::parse(&headers(&[("cache-control", "max-age=ten")]));
        assert_eq!(d.max_age, Some(0));
        let d = ResponseDirectives::parse(&headers(&[("cache-control", "max-age")]));
        assert_eq!(d.max_age, Some(0));
    }

    #[test]
    fn huge_delta_is_capped() {
        assert_eq!(
            delta_seconds("99999999999999999999999"),
            Some(DELTA_SECONDS_CAP)
        );
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(delta_seconds("12"), Some(12));
    }

    #[test]
    fn response_pragma_is_ignored() {
        let d = ResponseDirectives::parse(&headers(&[("pragma", "no-cache")]));
        assert!(!d.no_cache);
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let d = RequestDirectives::parse(&headers(&[("pragma", "no-cache")]));
        assert!(d.no_cache);
        let d = RequestDirectives::parse(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(!d.no_cache);
        assert_eq!(d.max_age, Some(5));
    }

    #[test]
    fn request_directives() {
        let d = RequestDirectives::parse(&headers(&[(
            "cache-control",
            "no-store, only-if-cached, min-fresh=3, max-age=x",
        )]));
        assert!(d.no_store && d.only_if_cached && !d.no_cache);
        assert_eq!(d.min_fresh, Some(3));
        assert_eq!(d.max_age, Some(0));
    }

    #[test]
    fn dates_in_all_three_formats() {
        let want = http_date(b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(want.is_some());
        assert_eq!(http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(http_date(b"Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(http_date(b"0"), None);
        assert_eq!(
            format_http_date(want.unwrap_or(SystemTime::UNIX_EPOCH)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
