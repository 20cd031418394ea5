//! The canonical request form the proxy must send toward an origin, as a strict parser:
//! a message in this form has exactly one reading under RFC 9112, so no origin parser,
//! lenient or strict, can frame it differently from the proxy. Rules:
//! - every line ends in CRLF; no other CR or LF anywhere in the head or chunk lines;
//! - request line `METHOD SP /origin-form SP HTTP/1.1`, single spaces, visible bytes;
//! - fields `token: value`, one space after the colon, no whitespace around the value,
//!   no control bytes but HTAB, no folding, exactly one Host;
//! - at most one framing field: one `Content-Length` in plain decimal without leading
//!   zeros, or one `Transfer-Encoding: chunked`; no `_` look-alikes of either name;
//! - chunk sizes in lower-case hex without leading zeros, no extensions, no trailers.

/// One request as read by the canonical parser.
#[derive(Debug, Clone)]
pub struct Message {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Message {
    /// Values of every field called `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the single field called `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        match self.all(name).as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// Reads as many complete canonical requests as `bytes` holds. Returns them and the
/// bytes they used; what is left is a canonical prefix of a further request. Anything
/// not canonical is an error naming the rule it breaks.
pub fn parse_canonical(bytes: &[u8]) -> Result<(Vec<Message>, usize), String> {
    let mut messages = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match parse_one(bytes, at)? {
            Some((message, next)) => {
                messages.push(message);
                at = next;
            }
            None => break,
        }
    }
    Ok((messages, at))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The next CRLF-terminated line from `at`: `Ok(None)` if it is not complete yet.
fn line(bytes: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &bytes[at..];
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        let partial = rest.strip_suffix(b"\r").unwrap_or(rest);
        if partial.contains(&b'\r') {
            return Err(format!("bare CR in {:?}", String::from_utf8_lossy(rest)));
        }
        return Ok(None);
    };
    if lf == 0 || rest[lf - 1] != b'\r' {
        return Err(format!(
            "bare LF after {:?}",
            String::from_utf8_lossy(&rest[..lf])
        ));
    }
    let text = &rest[..lf - 1];
    if text.contains(&b'\r') {
        return Err(format!("bare CR in {:?}", String::from_utf8_lossy(text)));
    }
    Ok(Some((text, at + lf + 1)))
}

fn parse_one(bytes: &[u8], start: usize) -> Result<Option<(Message, usize)>, String> {
    let Some((request_line, mut at)) = line(bytes, start)? else {
        return Ok(None);
    };
    let (method, target) = request_line_parts(request_line)?;
    let mut headers = Vec::new();
    loop {
        let Some((field, next)) = line(bytes, at)? else {
            return Ok(None);
        };
        at = next;
        if field.is_empty() {
            break;
        }
        headers.push(field_parts(field)?);
    }
    let mut message = Message {
        method,
        target,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    let framing = check_fields(&message)?;
    let end = match framing {
        Framing::Length(n) => {
            if bytes.len() - at < n {
                return Ok(None);
            }
            message.body = bytes[at..at + n].to_vec();
            at + n
        }
        Framing::Chunked => {
            message.chunked = true;
            match chunked_body(bytes, at, &mut message.body)? {
                Some(end) => end,
                None => return Ok(None),
            }
        }
    };
    Ok(Some((message, end)))
}

fn request_line_parts(line: &[u8]) -> Result<(String, String), String> {
    let text = String::from_utf8_lossy(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(format!(
            "request line not three single-space parts: {text:?}"
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(format!("bad method in {text:?}"));
    }
    if !target.starts_with(b"/") || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(format!("target not origin-form in {text:?}"));
    }
    if *version != b"HTTP/1.1" {
        return Err(format!("version not HTTP/1.1 in {text:?}"));
    }
    Ok((
        String::from_utf8_lossy(method).into_owned(),
        String::from_utf8_lossy(target).into_owned(),
    ))
}

fn field_parts(field: &[u8]) -> Result<(String, String), String> {
    let text = String::from_utf8_lossy(field).into_owned();
    let colon = field
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("field without colon: {text:?}"))?;
    let (name, rest) = field.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("field name not a token: {text:?}"));
    }
    let value = match rest {
        b":" => &b""[..],
        _ => rest
            .strip_prefix(b": ")
            .ok_or_else(|| format!("no single space after colon: {text:?}"))?,
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    if value.first().is_some_and(blank) || value.last().is_some_and(blank) {
        return Err(format!("whitespace around value: {text:?}"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!("control byte in value: {text:?}"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

enum Framing {
    Length(usize),
    Chunked,
}

fn check_fields(message: &Message) -> Result<Framing, String> {
    for (name, _) in &message.headers {
        let dashed = name.replace('_', "-");
        let framing_name = dashed.eq_ignore_ascii_case("content-length")
            || dashed.eq_ignore_ascii_case("transfer-encoding");
        if framing_name && name.contains('_') {
            return Err(format!("look-alike framing field {name:?}"));
        }
    }
    if message.all("host").len() != 1 {
        return Err(format!("{} Host fields", message.all("host").len()));
    }
    let lengths = message.all("content-length");
    let codings = message.all("transfer-encoding");
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(Framing::Length(0)),
        ([], ["chunked"]) => Ok(Framing::Chunked),
        ([n], [])
            if *n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            n.parse()
                .map(Framing::Length)
                .map_err(|e| format!("Content-Length {n}: {e}"))
        }
        _ => Err(format!(
            "ambiguous framing: Content-Length {lengths:?}, Transfer-Encoding {codings:?}"
        )),
    }
}

/// Reads canonical chunks from `at` into `body`; the end of the message, or `None`.
fn chunked_body(bytes: &[u8], mut at: usize, body: &mut Vec<u8>) -> Result<Option<usize>, String> {
    loop {
        let Some((size_line, next)) = line(bytes, at)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(size_line);
        let size = usize::from_str_radix(&text, 16)
            .map_err(|_| format!("chunk size not plain hex: {text:?}"))?;
        if format!("{size:x}") != text {
            return Err(format!("chunk size not canonical: {text:?}"));
        }
        at = next;
        if size == 0 {
            return match line(bytes, at)? {
                None => Ok(None),
                Some((b"", end)) => Ok(Some(end)),
                Some((trailer, _)) => Err(format!(
                    "trailer field forwarded: {:?}",
                    String::from_utf8_lossy(trailer)
                )),
            };
        }
        if bytes.len() < at + size + 2 {
            // A prefix of the data is fine; its CRLF is checked once it is there.
            return Ok(None);
        }
        body.extend_from_slice(&bytes[at..at + size]);
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_and_refuses_the_rest() {
        let good = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (messages, used) = parse_canonical(good).unwrap();
        assert_eq!((messages.len(), used), (2, good.len()));
        assert_eq!(messages[0].body, b"hello");
        for bad in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 05\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nX : y\r\n",
        ] {
            assert!(
                parse_canonical(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
