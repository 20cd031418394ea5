//! Message body length (RFC 9112 §6.1–6.3), decided strictly: any framing that two
//! parsers could read differently is refused, never forwarded (request smuggling).

use super::head::Version;
use super::headers::Headers;
use crate::error::ProxyError;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    Empty,
    Fixed(u64),
    Chunked,
    /// Response only: the body runs until the origin closes the connection.
    UntilClose,
}

/// The request body length, or 400 for ambiguous framing.
pub fn request_body(version: Version, headers: &Headers) -> Result<BodyLength, ProxyError> {
    if headers.iter().any(|h| imitates_framing(&h.name)) {
        return Err(ProxyError::BadRequest(
            "field name imitates Content-Length or Transfer-Encoding",
        ));
    }
    if headers.contains("transfer-encoding") {
        if headers.contains("content-length") {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            // RFC 9112 §6.1: treat the framing of an HTTP/1.0 message with TE as faulty.
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        return match transfer_coding(headers) {
            Coding::Chunked => Ok(BodyLength::Chunked),
            Coding::NotChunkedLast => Err(ProxyError::BadRequest(
                "final transfer coding is not chunked",
            )),
            Coding::Unsupported => Err(ProxyError::NotImplemented("transfer coding")),
        };
    }
    match content_length(headers) {
        Ok(None) | Ok(Some(0)) => Ok(BodyLength::Empty),
        Ok(Some(n)) => Ok(BodyLength::Fixed(n)),
        Err(()) => Err(ProxyError::BadRequest("invalid Content-Length")),
    }
}

/// The response body length for a request made with `method`.
pub fn response_body(
    method: &[u8],
    status: u16,
    headers: &Headers,
) -> Result<BodyLength, ProxyError> {
    if method == b"HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyLength::Empty);
    }
    if headers.contains("transfer-encoding") {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a response whose
        // final coding is not chunked runs until close.
        // Other codings before a final chunked (`gzip, chunked`) stay on the body: only
        // the chunking is decoded, and the client is told about the rest.
        return Ok(match transfer_coding(headers) {
            Coding::Chunked | Coding::Unsupported => BodyLength::Chunked,
            Coding::NotChunkedLast => BodyLength::UntilClose,
        });
    }
    match content_length(headers) {
        Ok(None) => Ok(BodyLength::UntilClose),
        Ok(Some(0)) => Ok(BodyLength::Empty),
        Ok(Some(n)) => Ok(BodyLength::Fixed(n)),
        Err(()) => Err(ProxyError::BadResponse("invalid Content-Length")),
    }
}

/// `Content_Length` or `Transfer_Encoding` (any casing): a valid token we would forward
/// as an ordinary field, but servers that map field names to CGI-style variables
/// (`HTTP_CONTENT_LENGTH`) read it as the framing field itself, so the origin would
/// frame the body differently from us. (nginx and gunicorn drop such names by default.)
fn imitates_framing(name: &[u8]) -> bool {
    let lookalike = |real: &[u8]| {
        name.len() == real.len()
            && name.contains(&b'_')
            && name
                .iter()
                .zip(real)
                .all(|(&n, &r)| n.eq_ignore_ascii_case(&r) || (n == b'_' && r == b'-'))
    };
    lookalike(b"content-length") || lookalike(b"transfer-encoding")
}

enum Coding {
    /// Exactly `chunked`: the only coding the proxy decodes and re-encodes.
    Chunked,
    NotChunkedLast,
    /// Other codings before `chunked` (gzip, chunked): not implemented.
    Unsupported,
}

fn transfer_coding(headers: &Headers) -> Coding {
    let codings: Vec<&[u8]> = headers.tokens("transfer-encoding").collect();
    match codings.as_slice() {
        [only] if only.eq_ignore_ascii_case(b"chunked") => Coding::Chunked,
        [.., last] if last.eq_ignore_ascii_case(b"chunked") => Coding::Unsupported,
        _ => Coding::NotChunkedLast,
    }
}

/// Every Content-Length value, across fields and list elements, must be the same
/// plain decimal number (RFC 9110 §8.6).
fn content_length(headers: &Headers) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    for field in headers.get_all("content-length") {
        // An empty field value is invalid, unlike an empty list element elsewhere.
        if field.trim_ascii().is_empty() {
            return Err(());
        }
        for element in field.split(|&b| b == b',') {
            let value = parse_decimal(element.trim_ascii()).ok_or(())?;
            if found.is_some_and(|f| f != value) {
                return Err(());
            }
            found = Some(value);
        }
    }
    Ok(found)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn headers(fields: &[(&'static str, &'static str)]) -> Headers {
        fields.iter().map(|&(n, v)| Header::new(n, v)).collect()
    }

    #[test]
    fn request_framing() {
        let v11 = Version::Http11;
        let ok = [
            (vec![], BodyLength::Empty),
            (vec![("Content-Length", "0")], BodyLength::Empty),
            (vec![("Content-Length", "12")], BodyLength::Fixed(12)),
            (
                vec![("content-length", "5"), ("Content-Length", "5")],
                BodyLength::Fixed(5),
            ),
            (vec![("Content-Length", "5, 5")], BodyLength::Fixed(5)),
            (vec![("Transfer-Encoding", "chunked")], BodyLength::Chunked),
            (vec![("Transfer-Encoding", "CHUNKED")], BodyLength::Chunked),
            (vec![("X_Content_Length", "5")], BodyLength::Empty),
        ];
        for (fields, want) in ok {
            assert_eq!(
                request_body(v11, &headers(&fields)).unwrap(),
                want,
                "{fields:?}"
            );
        }
        let bad = [
            vec![("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            vec![("Content-Length", "5"), ("Content-Length", "6")],
            vec![("Content-Length", "5, 6")],
            vec![("Content-Length", "+5")],
            vec![("Content-Length", "-5")],
            vec![("Content-Length", "0x5")],
            vec![("Content-Length", "")],
            vec![("Content-Length", "99999999999999999999")],
            vec![("Transfer-Encoding", "gzip")],
            vec![("Transfer-Encoding", "chunked, gzip")],
            vec![
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "identity"),
            ],
            vec![("Transfer-Encoding", "chunked, chunked")],
            vec![("Transfer-Encoding", "xchunked")],
            vec![("Transfer-Encoding", "")],
            vec![("Transfer_Encoding", "chunked")],
            vec![("content_length", "5")],
            vec![("Content-Length", "5"), ("Content_Length", "6")],
        ];
        for fields in bad {
            assert!(request_body(v11, &headers(&fields)).is_err(), "{fields:?}");
        }
        let te = headers(&[("Transfer-Encoding", "chunked")]);
        assert!(request_body(Version::Http10, &te).is_err());
    }

    #[test]
    fn response_framing() {
        let te = headers(&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]);
        assert_eq!(
            response_body(b"GET", 200, &te).unwrap(),
            BodyLength::Chunked
        );
        assert_eq!(response_body(b"HEAD", 200, &te).unwrap(), BodyLength::Empty);
        for status in [100, 101, 204, 304] {
            assert_eq!(
                response_body(b"GET", status, &te).unwrap(),
                BodyLength::Empty
            );
        }
        assert_eq!(
            response_body(b"GET", 200, &headers(&[])).unwrap(),
            BodyLength::UntilClose
        );
        let gz = headers(&[("Transfer-Encoding", "gzip")]);
        assert_eq!(
            response_body(b"GET", 200, &gz).unwrap(),
            BodyLength::UntilClose
        );
        let cl = headers(&[("Content-Length", "1"), ("Content-Length", "2")]);
        assert!(response_body(b"GET", 200, &cl).is_err());
    }
}
