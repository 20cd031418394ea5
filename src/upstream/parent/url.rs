//! A parent's URL: `scheme://[user:password@]host:port[/]`, the scheme one of `http`,
//! `https`, `socks5`, `socks5h`. The user name and password may be percent-encoded (a
//! `@` or `:` in a password). The port is required: proxies listen on every port from
//! 80 to 8080, and a guessed default would fail far from its cause.

/// How the proxy speaks to a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentKind {
    /// HTTP proxy: plain requests in absolute form, tunnels by `CONNECT`.
    Http,
    /// The same over TLS.
    Https,
    /// SOCKS5 (RFC 1928); this proxy resolves the target's name.
    Socks5,
    /// SOCKS5; the parent resolves the name.
    Socks5h,
}

/// What a parent URL says.
#[derive(Debug, PartialEq, Eq)]
pub struct ParentUrl {
    pub kind: ParentKind,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

/// Reads a parent URL; the reason when it is not one.
pub fn parse_url(url: &str) -> Result<ParentUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?}: expected scheme://host:port"))?;
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" => ParentKind::Http,
        "https" => ParentKind::Https,
        "socks5" => ParentKind::Socks5,
        "socks5h" => ParentKind::Socks5h,
        other => {
            return Err(format!(
                "unknown parent scheme {other:?} (http, https, socks5 or socks5h)"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(format!("{url:?}: a parent URL has no path"));
    }
    let (credentials, authority) = match rest.rsplit_once('@') {
        Some((userinfo, authority)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((decode(user)?, decode(pass)?)), authority)
        }
        None => (None, rest),
    };
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| format!("{url:?}: expected host:port (the port is required)"))?;
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(ParentUrl {
        kind,
        host,
        port,
        credentials,
    })
}

/// `host:port` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?.to_string(),
        None if host.contains(':') => return None,
        None => host.to_ascii_lowercase(),
    };
    Some((host, port))
}

/// Percent-decoding (RFC 3986 §2.1) of a user name or password.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding in the parent's credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the parent's credentials are not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_each_kind() {
        let url = parse_url("http://user:p%40ss@Proxy.corp.example:3128").unwrap();
        assert_eq!(url.kind, ParentKind::Http);
        assert_eq!(url.host, "proxy.corp.example");
        assert_eq!(url.port, 3128);
        assert_eq!(url.credentials, Some(("user".into(), "p@ss".into())));
        let url = parse_url("socks5h://[::1]:1080/").unwrap();
        assert_eq!((url.kind, url.host.as_str()), (ParentKind::Socks5h, "::1"));
        assert_eq!(parse_url("https://p:443").unwrap().kind, ParentKind::Https);
        assert_eq!(parse_url("socks5://p:1").unwrap().kind, ParentKind::Socks5);
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in [
            "proxy:3128",
            "ftp://p:21",
            "http://p",
            "http://p:0",
            "http://p:3128/path",
            "http://:3128",
            "http://u:%zz@p:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
