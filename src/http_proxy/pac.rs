//! The proxy auto-config file (PAC) on HTTP listeners: an origin-form `GET /proxy.pac`
//! or `/wpad.dat` — a request to the proxy itself rather than through it, otherwise
//! refused with 400 — is answered with the `--pac-file` contents, or with a PAC that
//! points at the listener asked: `HTTPS host:port` on a TLS listener (how a desktop
//! browser learns to use an HTTPS proxy), `PROXY host:port` otherwise. Clients outside
//! `--allow-clients` are refused as for any request.

use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt as _;

use crate::client::ClientStream;
use crate::conn::{Context, Exchange, Next};
use crate::error::ProxyError;
use crate::http::Reader;
use crate::http::answer;
use crate::http::head::HeadLimits;
use crate::http::origin::{OriginRequestHead, parse_origin_request};

/// The paths a PAC file is served at: the usual name, and the one WPAD discovery asks
/// for (a browser set to "auto-detect" fetches `http://wpad/wpad.dat`).
const PAC_PATHS: [&[u8]; 2] = [b"/proxy.pac", b"/wpad.dat"];

/// The media type browsers expect for a PAC file.
pub const PAC_MEDIA_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// A PAC request read from the buffered bytes.
pub struct PacRequest {
    head: OriginRequestHead,
}

/// The PAC request at the start of `buffered`, if that is what it is: `GET` or `HEAD` of
/// one of [`PAC_PATHS`].
pub fn request(buffered: &[u8]) -> Option<PacRequest> {
    let mut buf = BytesMut::from(buffered);
    let head = parse_origin_request(&mut buf, HeadLimits::PROXY).ok()??;
    let method_fits = head.is_method("GET") || head.is_method("HEAD");
    (method_fits && PAC_PATHS.contains(&head.path())).then_some(PacRequest { head })
}

/// Answers a PAC request and records it; the connection then closes (the request's
/// framing is not followed further).
pub async fn answer(
    ctx: &Context,
    client: &mut Reader<ClientStream>,
    request: PacRequest,
    consumed: u64,
) -> Next {
    let stream = client.get_ref();
    let path = String::from_utf8_lossy(request.head.path()).into_owned();
    let mut exchange = ctx.recorded(Exchange::unparsed(stream.peer(), Instant::now()));
    exchange.method = String::from_utf8_lossy(&request.head.method).into_owned();
    exchange.target = path;
    let answer = match ctx.access.baseline().check_client(stream.peer().ip()) {
        Ok(()) => {
            exchange.status = 200;
            let body = match &ctx.pac {
                Some(file) => file.current().to_vec(),
                None => generated(ctx, stream, &request.head).into_bytes(),
            };
            response(&body, request.head.is_method("HEAD"))
        }
        Err(denial) => {
            let error = ProxyError::Forbidden(denial.into());
            exchange.failed(&error);
            answer::for_error(&ctx.config.via_name, &error).unwrap_or_default()
        }
    };
    exchange.bytes_from_client = client.bytes_read() - consumed;
    let stream = client.get_mut();
    if stream.write_all(&answer).await.is_ok() {
        let _ = stream.shutdown().await;
        exchange.bytes_to_client = answer.len() as u64;
    }
    exchange.finish();
    Next::Close
}

/// `200 OK` with the PAC file (its length only, for `HEAD`).
fn response(body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {PAC_MEDIA_TYPE}\r\nContent-Length: {}\r\n\
         Cache-Control: max-age=300\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A PAC that sends everything through the listener the client asked, by the name it
/// used in `Host` (a TLS client checks the certificate against that name), else by the
/// address it connected to.
fn generated(ctx: &Context, stream: &ClientStream, head: &OriginRequestHead) -> String {
    let listener = ctx.listener(stream.listener());
    let local = stream
        .local_addr()
        .ok()
        .or(listener.map(|l| l.addr))
        .unwrap_or_else(|| ctx.config.main_addr());
    let host = head
        .headers
        .get("host")
        .and_then(|value| host_name(value))
        .unwrap_or_else(|| match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        });
    let kind = if listener.is_some_and(|l| l.tls.is_some()) {
        "HTTPS"
    } else {
        "PROXY"
    };
    pac_for(kind, &host, local.port())
}

/// The PAC text: every URL through `kind host:port`.
fn pac_for(kind: &str, host: &str, port: u16) -> String {
    format!("function FindProxyForURL(url, host) {{\n  return \"{kind} {host}:{port}\";\n}}\n")
}

/// The host part of a `Host` value, when it is a plain name or address literal: it is
/// written into a script, so nothing else may pass.
fn host_name(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let host = if text.starts_with('[') {
        &text[..=text.find(']')?]
    } else {
        text.split(':').next()?
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-[]:".contains(c);
    (!host.is_empty() && host.chars().all(allowed)).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pac_paths_by_get_or_head_are_pac_requests() {
        let ask = |text: &str| request(text.as_bytes()).is_some();
        assert!(ask("GET /proxy.pac HTTP/1.1\r\nHost: p\r\n\r\n"));
        assert!(ask("GET /wpad.dat?x=1 HTTP/1.1\r\nHost: p\r\n\r\n"));
        assert!(ask("HEAD /proxy.pac HTTP/1.1\r\nHost: p\r\n\r\n"));
        assert!(!ask(
            "POST /proxy.pac HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ask("GET /other HTTP/1.1\r\nHost: p\r\n\r\n"));
        assert!(!ask("GET /proxy.pac HTTP/1.1\r\nHost: p\r\n"), "incomplete");
    }

    #[test]
    fn host_names_written_into_the_script_are_plain() {
        assert_eq!(
            host_name(b"proxy.example:3129").as_deref(),
            Some("proxy.example")
        );
        assert_eq!(host_name(b"[::1]:3129").as_deref(), Some("[::1]"));
        assert_eq!(host_name(b"127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name(b"evil\"; alert(1); \""), None);
        assert_eq!(host_name(b""), None);
        assert_eq!(
            pac_for("HTTPS", "proxy.example", 3129),
            "function FindProxyForURL(url, host) {\n  return \"HTTPS proxy.example:3129\";\n}\n"
        );
    }
}
