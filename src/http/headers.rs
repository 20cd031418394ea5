//! Header fields as parsed from the wire: an ordered list of name/value pairs that keeps
//! each field's spelling and order, with the lookups the proxy needs (case-insensitive
//! names, comma-separated token lists). Values are zero-copy slices of the received head.

use bytes::Bytes;

/// Fields that describe one hop and never pass the proxy (RFC 9110 §7.6.1), plus the
/// proxy's own credentials (RFC 9110 §11.7).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// One header field. The name is a token (httparse guarantees it), so it is ASCII.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: Bytes,
    pub value: Bytes,
}

impl Header {
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Whether this field's name is `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The name as text; names are tokens, so this never fails for parsed fields.
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("")
    }
}

/// An ordered list of header fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Headers {
        Headers(Vec::with_capacity(n))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().find(|h| h.is(name)).map(|h| &h.value)
    }

    /// The first field named `name`, if its value is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every field named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0.iter().filter(move |h| h.is(name)).map(|h| &h.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|h| h.is(name))
    }

    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.0.push(Header::new(name, value));
    }

    /// The last field named `name`, to change in place.
    pub fn last_mut(&mut self, name: &str) -> Option<&mut Header> {
        self.0.iter_mut().rev().find(|h| h.is(name))
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.is(name));
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.0.retain(keep);
    }

    /// Replaces every field named `name` with one field holding `value`, at the position
    /// of the first one (or at the end if there was none).
    pub fn set(&mut self, name: &'static str, value: impl Into<Bytes>) {
        let value = value.into();
        match self.0.iter().position(|h| h.is(name)) {
            Some(first) => {
                self.0[first].value = value;
                let mut index = 0;
                self.0.retain(|h| {
                    index += 1;
                    index - 1 == first || !h.is(name)
                });
            }
            None => self.0.push(Header::new(name, value)),
        }
    }

    /// The elements of the comma-separated list held by every field named `name`
    /// (RFC 9110 §5.6.1), trimmed of whitespace, empty elements skipped.
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }

    /// Whether the list in the fields named `name` holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Writes every field as `Name: value\r\n`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for h in &self.0 {
            out.extend_from_slice(&h.name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Headers {
        Headers(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        [
            Header::new("Host", "a"),
            Header::new("connection", "keep-alive, X-Foo"),
            Header::new("X-Foo", "1"),
            Header::new("Connection", " Upgrade ,"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn lookups_ignore_case() {
        let h = sample();
        assert_eq!(h.get("HOST").map(|v| &v[..]), Some(&b"a"[..]));
        assert!(h.contains("x-foo"));
        assert_eq!(h.get_all("CONNECTION").count(), 2);
    }

    #[test]
    fn tokens_span_fields() {
        let h = sample();
        let t: Vec<&[u8]> = h.tokens("connection").collect();
        assert_eq!(t, vec![&b"keep-alive"[..], b"X-Foo", b"Upgrade"]);
        assert!(h.has_token("Connection", "upgrade"));
        assert!(!h.has_token("Connection", "close"));
    }

    #[test]
    fn set_replaces_in_place() {
        let mut h = sample();
        h.set("connection", "close");
        let names: Vec<&str> = h.iter().map(|h| h.name_str()).collect();
        assert_eq!(names, vec!["Host", "connection", "X-Foo"]);
        assert_eq!(h.get("Connection").map(|v| &v[..]), Some(&b"close"[..]));
    }

    #[test]
    fn write_keeps_order_and_spelling() {
        let mut out = Vec::new();
        sample().write_to(&mut out);
        assert!(out.starts_with(b"Host: a\r\nconnection: keep-alive, X-Foo\r\n"));
    }
}
