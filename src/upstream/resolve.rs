//! Name resolution for the dialer: address literals as they are, names through the
//! system resolver (getaddrinfo on tokio's blocking pool). Every address found is
//! returned, for the dialer to check before it connects to any.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::error::ProxyError;

/// Resolves `host` to the addresses a connection may go to. IP literals skip the resolver.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProxyError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let failed = |source| ProxyError::Resolve {
        host: host.to_string(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(failed)?
        .collect();
    if addrs.is_empty() {
        return Err(failed(io::Error::new(
            io::ErrorKind::NotFound,
            "no addresses",
        )));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[tokio::test]
    async fn literals_skip_the_resolver_and_failures_keep_their_cause() {
        assert_eq!(
            resolve("127.0.0.1", 80).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("::1", 443).await.unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        let error = resolve("no-such-host.invalid", 80).await.unwrap_err();
        assert_eq!(error.status(), Some(502));
        assert_eq!(error.brief(), "upstream_resolve");
        assert_eq!(
            error.body(),
            "Bad gateway: cannot resolve no-such-host.invalid.\n"
        );
        assert!(error.source().is_some(), "the resolver's error is kept");
    }
}
