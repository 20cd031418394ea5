//! The operator's header controls at the proxy boundary: whether this hop is recorded in
//! `Via` (`--via`), what the origin learns of the client's address (`--forwarded-for`,
//! Squid's `forwarded_for` semantics) and the `[headers]` lists of fields to remove from
//! and add to requests and responses. Applied after the hop-by-hop fields and the
//! proxy's credentials are stripped, which no setting can bring back: a field the lists
//! may not add is refused when the settings are read ([`field`]).

use std::net::IpAddr;

use bytes::Bytes;

use super::headers::{HOP_BY_HOP, Header, Headers};

/// What the origin learns of the client's address in `X-Forwarded-For` (Squid's
/// `forwarded_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedFor {
    /// The client's address is appended.
    On,
    /// `unknown` is appended.
    Off,
    /// Every `X-Forwarded-For` field is removed.
    Delete,
    /// The field passes as the client sent it, nothing added (the default).
    #[default]
    Transparent,
}

impl ForwardedFor {
    pub fn parse(text: &str) -> Result<ForwardedFor, String> {
        match text {
            "on" => Ok(ForwardedFor::On),
            "off" => Ok(ForwardedFor::Off),
            "delete" => Ok(ForwardedFor::Delete),
            "transparent" => Ok(ForwardedFor::Transparent),
            _ => Err("expected on, off, delete or transparent".into()),
        }
    }
}

/// Header settings for forwarded requests and their responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Whether this proxy adds itself to `Via` (requests and responses).
    pub via: bool,
    pub forwarded_for: ForwardedFor,
    pub request_remove: Vec<Box<str>>,
    pub request_add: Vec<Header>,
    pub response_remove: Vec<Box<str>>,
    pub response_add: Vec<Header>,
}

impl HeaderEdits {
    /// `Via` on, `X-Forwarded-For` passed as sent, no lists.
    pub const DEFAULT: HeaderEdits = HeaderEdits {
        via: true,
        forwarded_for: ForwardedFor::Transparent,
        request_remove: Vec::new(),
        request_add: Vec::new(),
        response_remove: Vec::new(),
        response_add: Vec::new(),
    };
}

impl Default for HeaderEdits {
    fn default() -> HeaderEdits {
        HeaderEdits::DEFAULT
    }
}

/// Fields the add lists may not name besides the hop-by-hop ones and proxy credentials
/// ([`HOP_BY_HOP`]): they frame the body or name the origin, and the proxy writes them
/// itself.
const NOT_ADDABLE: [&str; 3] = ["content-length", "transfer-encoding", "host"];

impl HeaderEdits {
    /// The request's fields after the operator's lists and `X-Forwarded-For`; `Via` is
    /// the caller's (it knows the version).
    pub fn edit_request(&self, headers: &mut Headers, client: IpAddr) {
        for name in &self.request_remove {
            headers.remove(name);
        }
        match self.forwarded_for {
            ForwardedFor::Transparent => {}
            ForwardedFor::Delete => headers.remove("x-forwarded-for"),
            ForwardedFor::On => append_to(headers, client.to_canonical().to_string()),
            ForwardedFor::Off => append_to(headers, "unknown".to_string()),
        }
        for field in &self.request_add {
            headers.push(field.clone());
        }
    }
}

impl HeaderEdits {
    /// A stored response's head, as `render` writes it with `extra` fields at its end,
    /// without the fields `response_remove` names (those in `extra` kept: they are
    /// this proxy's own, added after the removal as for a forwarded response).
    pub fn render_hit(&self, render: impl Fn(&Headers) -> Vec<u8>, extra: Headers) -> Vec<u8> {
        if self.response_remove.is_empty() {
            return render(&extra);
        }
        let stored = render(&Headers::new());
        let mut out = Vec::with_capacity(stored.len() + 128);
        let mut lines = stored.split_inclusive(|b| *b == b'\n');
        // The status line, then every field line but the final blank one.
        out.extend_from_slice(lines.next().unwrap_or_default());
        for line in lines.filter(|line| *line != b"\r\n") {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let removed = self
                .response_remove
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            if !removed {
                out.extend_from_slice(line);
            }
        }
        extra.write_to(&mut out);
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Appends `value` to the last `X-Forwarded-For` field, or adds one, as Squid does.
fn append_to(headers: &mut Headers, value: String) {
    match headers.last_mut("x-forwarded-for") {
        Some(last) => {
            let mut joined = last.value.to_vec();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
            last.value = Bytes::from(joined);
        }
        None => headers.push(Header::new("X-Forwarded-For", value)),
    }
}

/// A field name as the remove lists give it; the reason when it is not a token.
pub fn field_name(text: &str) -> Result<Box<str>, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !text.is_empty() && text.bytes().all(token) {
        Ok(text.into())
    } else {
        Err(format!("{text:?} is not a header field name"))
    }
}

/// `Name: value` as the add lists give it; the reason when it is not one, or names a
/// field the proxy writes itself.
pub fn field(text: &str) -> Result<Header, String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected \"Name: value\""))?;
    let name = field_name(name.trim_end())?;
    if HOP_BY_HOP
        .iter()
        .chain(&NOT_ADDABLE)
        .any(|n| name.eq_ignore_ascii_case(n))
    {
        return Err(format!(
            "{name} is written by the proxy itself (hop-by-hop, credentials or framing)"
        ));
    }
    let value = value.trim();
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(format!("{name}: control characters in the value"));
    }
    Ok(Header::new(
        Bytes::from(name.into_string()),
        Bytes::from(value.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }

    fn xff(edits: &HeaderEdits, start: &[(&'static str, &'static str)]) -> Vec<String> {
        let mut h = headers(start);
        edits.edit_request(&mut h, "::ffff:192.0.2.7".parse().unwrap());
        h.get_all("x-forwarded-for")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn forwarded_for_follows_squid() {
        let with = |forwarded_for| HeaderEdits {
            forwarded_for,
            ..HeaderEdits::default()
        };
        let sent = [("X-Forwarded-For", "10.0.0.1")];
        assert_eq!(xff(&with(ForwardedFor::On), &sent), ["10.0.0.1, 192.0.2.7"]);
        assert_eq!(xff(&with(ForwardedFor::On), &[]), ["192.0.2.7"]);
        assert_eq!(xff(&with(ForwardedFor::Off), &sent), ["10.0.0.1, unknown"]);
        assert!(xff(&with(ForwardedFor::Delete), &sent).is_empty());
        assert_eq!(xff(&with(ForwardedFor::Transparent), &sent), ["10.0.0.1"]);
        assert!(xff(&HeaderEdits::default(), &[]).is_empty());
    }

    #[test]
    fn cache_hits_lose_the_removed_fields_and_keep_the_added_ones() {
        let render = |extra: &Headers| {
            let mut out = b"HTTP/1.1 200 OK\r\nServer: x\r\nAge: 3\r\n".to_vec();
            extra.write_to(&mut out);
            out.extend_from_slice(b"\r\n");
            out
        };
        let extra = headers(&[("Server", "edge")]);
        let edits = HeaderEdits {
            response_remove: vec!["server".into()],
            ..HeaderEdits::default()
        };
        let out = edits.render_hit(render, extra.clone());
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nAge: 3\r\nServer: edge\r\n\r\n");
        let out = HeaderEdits::default().render_hit(render, extra);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: x\r\nAge: 3\r\nServer: edge\r\n\r\n"
        );
    }

    #[test]
    fn fields_the_proxy_writes_cannot_be_added() {
        assert!(field("Proxy-Authorization: Basic x").is_err());
        assert!(field("connection: close").is_err());
        assert!(field("no colon").is_err());
        assert!(field("Bad Name: x").is_err());
        assert!(field("X-Ok: a\u{7}").is_err());
        assert!(field_name("X-Ok").is_ok() && field_name("a b").is_err());
    }
}
