//! Turning a stored response into the answer for one request: the HTTP/1.1 head with
//! `Age` (RFC 9111 §5.1), `X-Cache: HIT` and `Content-Length`, and the body to write.
//! A request whose own `If-None-Match` / `If-Modified-Since` the stored response
//! satisfies gets a 304 instead (RFC 9111 §4.3.2, RFC 9110 §13.1).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::http::Headers;

use super::directives::http_date;
use super::store::Entry;

/// The name of the field telling the client whether the cache answered.
pub const X_CACHE: &str = "X-Cache";
/// `X-Cache` value on responses served from the cache.
pub const HIT: &str = "HIT";
/// `X-Cache` value on responses fetched from the origin.
pub const MISS: &str = "MISS";

/// RFC 9110 §15.4.5: the fields a 304 carries when the 200 would have carried them.
const NOT_MODIFIED_FIELDS: &[&str] = &[
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "vary",
];

/// A stored response chosen to answer a request.
#[derive(Debug, Clone)]
pub struct Hit {
    entry: Arc<Entry>,
    age: Duration,
    head_only: bool,
    not_modified: bool,
}

impl Hit {
    /// `request` is the client's method and fields; `now` gives the `Age`.
    pub(super) fn new(entry: Arc<Entry>, method: &str, request: &Headers, now: SystemTime) -> Hit {
        let age = entry.freshness.age(now);
        let not_modified = entry.status == 200 && condition_satisfied(&entry.headers, request);
        Hit {
            entry,
            age,
            head_only: method == "HEAD",
            not_modified,
        }
    }

    /// The status sent: the stored one, or 304 when the client's condition held.
    pub fn status(&self) -> u16 {
        if self.not_modified {
            304
        } else {
            self.entry.status
        }
    }

    /// The stored response fields (without `Age`, `X-Cache` and framing).
    pub fn headers(&self) -> &Headers {
        &self.entry.headers
    }

    /// The current age in whole seconds, as sent in `Age`.
    pub fn age_seconds(&self) -> u64 {
        self.age.as_secs()
    }

    /// The body to write after the head: empty for HEAD and 304 (RFC 9110 §9.3.2,
    /// §15.4.5). A cheap clone of the stored bytes.
    pub fn body(&self) -> Bytes {
        if self.head_only || self.not_modified {
            Bytes::new()
        } else {
            self.entry.body.clone()
        }
    }

    /// The complete HTTP/1.1 response head, ending with the blank line. `extra` fields
    /// (for example `Connection: close` or `Via`) go just before the blank line.
    pub fn render_head(&self, extra: &Headers) -> Vec<u8> {
        let entry = &self.entry;
        let mut out = Vec::with_capacity(256 + entry.headers.len() * 32);
        out.extend_from_slice(format!("HTTP/1.1 {} ", self.status()).as_bytes());
        if self.not_modified {
            out.extend_from_slice(b"Not Modified");
        } else {
            out.extend_from_slice(&entry.reason);
        }
        out.extend_from_slice(b"\r\n");
        if self.not_modified {
            let kept: Headers = entry
                .headers
                .iter()
                .filter(|h| NOT_MODIFIED_FIELDS.iter().any(|n| h.is(n)))
                .cloned()
                .collect();
            kept.write_to(&mut out);
        } else {
            entry.headers.write_to(&mut out);
            // RFC 9110 §8.6: no Content-Length in a 204. A HEAD gets the length the GET
            // would have had (§9.3.2).
            if entry.status != 204 {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n", entry.body.len()).as_bytes(),
                );
            }
        }
        out.extend_from_slice(
            format!("Age: {}\r\n{X_CACHE}: {HIT}\r\n", self.age_seconds()).as_bytes(),
        );
        extra.write_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Whether the client's conditional fields are satisfied by a stored 200, so a 304 is the
/// right answer (RFC 9110 §13.1.2, §13.1.3, §13.2.2: If-None-Match takes precedence and
/// uses the weak comparison; If-Modified-Since applies only without it).
fn condition_satisfied(stored: &Headers, request: &Headers) -> bool {
    if request.contains("if-none-match") {
        let Some(etag) = stored.get("etag") else {
            return false;
        };
        let opaque = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
        let ours = opaque(etag.trim_ascii());
        return request
            .tokens("if-none-match")
            .any(|t| t == b"*" || opaque(t) == ours);
    }
    let (Some(since), Some(modified)) = (
        request.get("if-modified-since"),
        stored.get("last-modified"),
    ) else {
        return false;
    };
    match (http_date(since), http_date(modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::VarySelector;
    use crate::cache::policy::Freshness;
    use crate::http::Header;

    fn entry(status: u16, fields: &[(&'static str, &'static str)]) -> Arc<Entry> {
        Arc::new(Entry {
            status,
            reason: Bytes::from_static(b"OK"),
            headers: fields.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: Bytes::from_static(b"hello"),
            vary: VarySelector::default(),
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::from_secs(3),
                response_time: SystemTime::UNIX_EPOCH,
                no_cache: false,
            },
        })
    }

    fn request(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }

    fn later(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn renders_full_head_with_age_and_length() {
        let hit = Hit::new(
            entry(200, &[("Content-Type", "text/plain")]),
            "GET",
            &Headers::new(),
            later(7),
        );
        let extra = request(&[("Connection", "close")]);
        let head = String::from_utf8(hit.render_head(&extra)).unwrap_or_default();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nAge: 10\r\n\
             X-Cache: HIT\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(&hit.body()[..], b"hello");
    }

    #[test]
    fn head_gets_length_but_no_body() {
        let hit = Hit::new(entry(200, &[]), "HEAD", &Headers::new(), later(0));
        let head = String::from_utf8(hit.render_head(&Headers::new())).unwrap_or_default();
        assert!(head.contains("Content-Length: 5\r\n"));
        assert!(hit.body().is_empty());
    }

    #[test]
    fn no_content_length_on_204() {
        let hit = Hit::new(entry(204, &[]), "GET", &Headers::new(), later(0));
        let head = String::from_utf8(hit.render_head(&Headers::new())).unwrap_or_default();
        assert!(!head.contains("Content-Length"));
    }

    #[test]
    fn client_conditionals_get_304() {
        let stored = entry(
            200,
            &[
                ("ETag", "\"v1\""),
                ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("Content-Type", "text/plain"),
            ],
        );
        let inm = request(&[("If-None-Match", "\"x\", W/\"v1\"")]);
        let hit = Hit::new(stored.clone(), "GET", &inm, later(0));
        assert_eq!(hit.status(), 304);
        assert!(hit.body().is_empty());
        let head = String::from_utf8(hit.render_head(&Headers::new())).unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n"));
        assert!(!head.contains("Content-Type") && !head.contains("Content-Length"));

        let other = request(&[("If-None-Match", "\"v2\"")]);
        assert_eq!(
            Hit::new(stored.clone(), "GET", &other, later(0)).status(),
            200
        );
        let ims = request(&[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            Hit::new(stored.clone(), "GET", &ims, later(0)).status(),
            304
        );
        let earlier = request(&[("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")]);
        assert_eq!(Hit::new(stored, "GET", &earlier, later(0)).status(), 200);
    }
}
