//! What identifies a stored response (RFC 9111 §2, §4.1): the normalised target URI, and
//! for responses carrying `Vary`, the values of the request fields it names. Also the
//! same-origin resolution of `Location` / `Content-Location` used by invalidation (§4.4).

use bytes::Bytes;

use crate::http::Headers;

/// A normalised absolute URI: scheme and host lower-case, the scheme's default port
/// dropped, path and query byte-exact (RFC 9110 §4.2.3 lets the path stay as sent; a
/// cache that normalised percent-encoding could merge distinct resources).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UriKey(Bytes);

impl UriKey {
    /// Builds the key from the parts of an absolute-form request target. An empty path
    /// is the same resource as `/` (RFC 9110 §4.2.3).
    pub fn new(scheme: &str, host: &str, port: u16, path_and_query: &[u8]) -> UriKey {
        let scheme = scheme.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        let mut out = Vec::with_capacity(scheme.len() + host.len() + path_and_query.len() + 12);
        out.extend_from_slice(scheme.as_bytes());
        out.extend_from_slice(b"://");
        // An IPv6 literal is written bracketed in a URI (RFC 3986 §3.2.2).
        let bracket = host.contains(':') && !host.starts_with('[');
        if bracket {
            out.push(b'[');
        }
        out.extend_from_slice(host.as_bytes());
        if bracket {
            out.push(b']');
        }
        if Some(port) != default_port(&scheme) {
            out.extend_from_slice(format!(":{port}").as_bytes());
        }
        if path_and_query.is_empty() {
            out.push(b'/');
        } else {
            out.extend_from_slice(path_and_query);
        }
        UriKey(Bytes::from(out))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `scheme://authority`, the part two keys share when they have the same origin.
    fn origin(&self) -> &[u8] {
        let after_scheme = find(&self.0, b"://").map_or(0, |i| i + 3);
        let end = self.0[after_scheme..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(self.0.len(), |i| after_scheme + i);
        &self.0[..end]
    }

    /// Resolves a `Location` or `Content-Location` value against this URI, returning a
    /// key only when the result has the same origin: RFC 9111 §4.4 forbids invalidating
    /// another origin's URIs (that would let one site purge another's entries).
    /// Relative references other than absolute paths are not resolved (none needed).
    pub fn same_origin_reference(&self, reference: &[u8]) -> Option<UriKey> {
        let reference = reference.trim_ascii();
        if reference.starts_with(b"/") && !reference.starts_with(b"//") {
            let mut out = self.origin().to_vec();
            out.extend_from_slice(reference);
            return Some(UriKey(Bytes::from(out)));
        }
        let text = std::str::from_utf8(reference).ok()?;
        let (scheme, rest) = text.split_once("://")?;
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (host, port) = split_authority(authority, default_port(&scheme.to_ascii_lowercase())?)?;
        let key = UriKey::new(scheme, host, port, path.as_bytes());
        (key.origin() == self.origin()).then_some(key)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn split_authority(authority: &str, default: u16) -> Option<(&str, u16)> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => default,
    };
    Some((host, port))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The secondary key of a stored response (RFC 9111 §4.1): for each field named by its
/// `Vary`, the value the original request had (`None` when absent). Names are lower-cased;
/// values are the request's fields of that name joined by ", " with each trimmed, the
/// normalisation §4.1 allows (whitespace is not significant in list fields).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VarySelector {
    fields: Vec<(String, Option<Bytes>)>,
}

impl VarySelector {
    /// The selector for a response, or `None` for `Vary: *`, which never matches any
    /// later request (§4.1) and so is not worth storing.
    pub fn from_response(response: &Headers, request: &Headers) -> Option<VarySelector> {
        let mut fields: Vec<(String, Option<Bytes>)> = Vec::new();
        for name in response.tokens("vary") {
            if name == b"*" {
                return None;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if fields.iter().all(|(n, _)| *n != name) {
                let value = request_value(request, &name);
                fields.push((name, value));
            }
        }
        Some(VarySelector { fields })
    }

    /// Whether a new request selects the response this selector was stored with.
    pub fn matches(&self, request: &Headers) -> bool {
        self.fields
            .iter()
            .all(|(name, value)| request_value(request, name) == *value)
    }

    /// Bytes this selector adds to an entry, for size accounting.
    pub fn size(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, Bytes::len))
            .sum()
    }
}

fn request_value(request: &Headers, name: &str) -> Option<Bytes> {
    let mut values = request.get_all(name).map(|v| v.trim_ascii());
    let first = values.next()?;
    let mut joined = first.to_vec();
    for more in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more);
    }
    Some(Bytes::from(joined))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn headers(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }

    #[test]
    fn uri_normalisation() {
        let a = UriKey::new("HTTP", "Example.COM", 80, b"/a/B?x=Y");
        assert_eq!(a.as_bytes(), b"http://example.com/a/B?x=Y");
        assert_eq!(
            UriKey::new("http", "h", 8080, b"").as_bytes(),
            b"http://h:8080/"
        );
        assert_eq!(
            UriKey::new("http", "::1", 80, b"/").as_bytes(),
            b"http://[::1]/"
        );
        assert_ne!(a, UriKey::new("http", "example.com", 80, b"/a/b?x=Y"));
    }

    #[test]
    fn same_origin_references() {
        let base = UriKey::new("http", "example.com", 80, b"/post");
        let rel = base.same_origin_reference(b"/thing?id=1");
        assert_eq!(
            rel,
            Some(UriKey::new("http", "example.com", 80, b"/thing?id=1"))
        );
        let abs = base.same_origin_reference(b"http://EXAMPLE.com:80/x");
        assert_eq!(abs, Some(UriKey::new("http", "example.com", 80, b"/x")));
        assert_eq!(base.same_origin_reference(b"http://other.com/x"), None);
        assert_eq!(base.same_origin_reference(b"http://example.com:81/x"), None);
        assert_eq!(base.same_origin_reference(b"//example.com/x"), None);
        assert_eq!(base.same_origin_reference(b"x"), None);
    }

    #[test]
    fn vary_selects_by_named_fields() {
        let response = headers(&[("Vary", "Accept-Encoding, accept-language")]);
        let gzip = headers(&[("accept-encoding", " gzip "), ("x", "1")]);
        let selector = VarySelector::from_response(&response, &gzip).unwrap_or_default();
        assert!(selector.matches(&headers(&[("Accept-Encoding", "gzip")])));
        assert!(!selector.matches(&headers(&[("Accept-Encoding", "br")])));
        assert!(!selector.matches(&headers(&[
            ("Accept-Encoding", "gzip"),
            ("Accept-Language", "en")
        ])));
    }

    #[test]
    fn vary_star_is_not_storable() {
        let response = headers(&[("Vary", "accept, *")]);
        assert_eq!(
            VarySelector::from_response(&response, &Headers::new()),
            None
        );
    }

    #[test]
    fn multiple_fields_join() {
        let response = headers(&[("Vary", "accept")]);
        let request = headers(&[("Accept", "a"), ("Accept", " b")]);
        let selector = VarySelector::from_response(&response, &request).unwrap_or_default();
        assert!(selector.matches(&headers(&[("accept", "a, b")])));
    }
}
