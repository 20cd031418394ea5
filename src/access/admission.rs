//! The admission decision: may this client, with these credentials, reach this target
//! this way? One function for every front end — HTTP today, SOCKS5 and TLS listeners
//! next — from what the client said to [`Decision`]. The checks that need no DNS run
//! here, in a fixed order: client address, credentials, target host, CONNECT port. The
//! addresses a name resolves to are checked by the dialer right before it connects.
//! Pure apart from password verification (bcrypt runs on the blocking pool): no sockets,
//! no protocol.

use std::net::{IpAddr, SocketAddr};

use super::Snapshot;
use crate::error::{AuthFailure, Refusal};
use crate::target::Target;

/// What a client presented to prove who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCredentials<'a> {
    /// Nothing.
    None,
    /// An HTTP `Proxy-Authorization` field value (RFC 9110 §11.7.2).
    ProxyAuthorization(&'a [u8]),
    /// A user name and password given apart (SOCKS5, RFC 1929).
    UserPassword { user: &'a [u8], password: &'a [u8] },
}

/// One request as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The listening address the client connected to.
    pub listener: SocketAddr,
    /// The client's address (as a PROXY header names it, where one is trusted).
    pub client: IpAddr,
    pub credentials: ClientCredentials<'a>,
    pub target: Target<'a>,
    /// The request method as sent (`CONNECT` for tunnels from any front end).
    pub method: &'a str,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; `user` is the authenticated user when authentication is on.
    Allow { user: Option<String> },
    /// Refused by the policy, with the reason and the rule.
    Deny(Refusal),
    /// Credentials are missing, malformed or wrong.
    AuthRequired(AuthFailure),
}

impl Snapshot {
    /// Decides on one request with this version of the rules.
    pub async fn admit(&self, request: &Admission<'_>) -> Decision {
        let policy = &self.policy;
        if let Err(denial) = policy.check_client(request.client) {
            return Decision::Deny(denial.into());
        }
        let user = match self.authenticate(request.credentials).await {
            Ok(user) => user,
            Err(failure) => return Decision::AuthRequired(failure),
        };
        if let Err(denial) = policy.check_host(request.target.host) {
            return Decision::Deny(denial.into());
        }
        if request.target.is_tunnel()
            && let Err(denial) = policy.check_connect_port(request.target.port)
        {
            return Decision::Deny(denial.into());
        }
        Decision::Allow { user }
    }

    /// Checks credentials alone: the user when authentication is on and they are right,
    /// `None` when it is off. A front end that authenticates before it knows the target
    /// (SOCKS5) asks this first; [`Snapshot::admit`] asks it again, which costs a digest
    /// or a cache lookup.
    pub async fn authenticate(
        &self,
        credentials: ClientCredentials<'_>,
    ) -> Result<Option<String>, AuthFailure> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(None);
        };
        let verified = match credentials {
            ClientCredentials::None => authenticator.authenticate(None).await,
            ClientCredentials::ProxyAuthorization(field) => {
                authenticator.authenticate(Some(field)).await
            }
            ClientCredentials::UserPassword { user, password } => {
                authenticator
                    .authenticate_user_password(user, password)
                    .await
            }
        };
        verified.map(Some).map_err(AuthFailure::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;

    use super::*;
    use crate::acl::{Policy, PortSet, parse, parse_client_net};
    use crate::auth::{Authenticator, parse_users};
    use crate::target::Kind;

    fn snapshot(rules: &str, users: Option<&str>) -> Snapshot {
        let mut policy = Policy::with_rules(parse(rules, "rules.txt").unwrap());
        policy.connect_ports = "443,8443".parse::<PortSet>().unwrap();
        policy.allow_clients = Some(vec![parse_client_net("10.0.0.0/8").unwrap()]);
        Snapshot {
            policy: Arc::new(policy),
            authenticator: users
                .map(|text| Arc::new(Authenticator::new(parse_users(text, "users.txt").unwrap()))),
        }
    }

    fn request<'a>(
        client: &str,
        credentials: ClientCredentials<'a>,
        host: &'a str,
        port: u16,
        kind: Kind,
    ) -> Admission<'a> {
        Admission {
            listener: "127.0.0.1:8888".parse().unwrap(),
            client: client.parse().unwrap(),
            credentials,
            target: Target::new(host, port, kind),
            method: if kind == Kind::Connect {
                "CONNECT"
            } else {
                "GET"
            },
        }
    }

    fn basic(user_password: &str) -> Vec<u8> {
        let token = base64::engine::general_purpose::STANDARD.encode(user_password);
        format!("Basic {token}").into_bytes()
    }

    fn brief(decision: &Decision) -> &'static str {
        match decision {
            Decision::Allow { .. } => "allow",
            Decision::Deny(refusal) => refusal.brief,
            Decision::AuthRequired(failure) => failure.brief,
        }
    }

    #[tokio::test]
    async fn checks_run_in_order_and_the_first_failure_answers() {
        let access = snapshot("blocked.example\n", Some("alice:secret\n"));
        let good = basic("alice:secret");
        let with = ClientCredentials::ProxyAuthorization(&good);
        let cases = [
            // A client outside the allow list is refused before its credentials count.
            (
                ("192.0.2.1", with, "ok.example", 80, Kind::Http),
                "client-not-allowed",
            ),
            (
                (
                    "10.1.1.1",
                    ClientCredentials::None,
                    "blocked.example",
                    80,
                    Kind::Http,
                ),
                "auth-missing",
            ),
            (
                ("10.1.1.1", with, "blocked.example", 80, Kind::Http),
                "blocked-host",
            ),
            (
                ("10.1.1.1", with, "ok.example", 25, Kind::Connect),
                "connect-port",
            ),
            // Ports limit tunnels only; plain requests may name any port.
            (("10.1.1.1", with, "ok.example", 25, Kind::Http), "allow"),
            (
                ("10.1.1.1", with, "ok.example", 8443, Kind::Connect),
                "allow",
            ),
            (
                ("10.1.1.1", with, "ok.example", 8080, Kind::Upgrade),
                "allow",
            ),
        ];
        for ((client, credentials, host, port, kind), expected) in cases {
            let decision = access
                .admit(&request(client, credentials, host, port, kind))
                .await;
            assert_eq!(
                brief(&decision),
                expected,
                "{client} {host}:{port} {kind:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_user_is_named_and_wrong_credentials_are_refused() {
        let access = snapshot("", Some("alice:secret\n"));
        let good = basic("alice:secret");
        let allowed = access
            .admit(&request(
                "10.0.0.1",
                ClientCredentials::ProxyAuthorization(&good),
                "ok.example",
                443,
                Kind::Connect,
            ))
            .await;
        assert_eq!(
            allowed,
            Decision::Allow {
                user: Some("alice".into())
            }
        );
        let wrong = basic("alice:guess");
        let refused = access
            .admit(&request(
                "10.0.0.1",
                ClientCredentials::ProxyAuthorization(&wrong),
                "ok.example",
                443,
                Kind::Connect,
            ))
            .await;
        assert_eq!(brief(&refused), "auth-rejected");
    }

    #[tokio::test]
    async fn a_user_and_password_given_apart_are_checked_alike() {
        let access = snapshot("", Some("alice:secret\n"));
        let apart = |user: &'static [u8], password: &'static [u8]| {
            request(
                "10.0.0.1",
                ClientCredentials::UserPassword { user, password },
                "ok.example",
                443,
                Kind::Connect,
            )
        };
        let allowed = access.admit(&apart(b"alice", b"secret")).await;
        assert_eq!(
            allowed,
            Decision::Allow {
                user: Some("alice".into())
            }
        );
        for (user, password, expected) in [
            (&b"alice"[..], &b"guess"[..], "auth-rejected"),
            (b"bob", b"secret", "auth-rejected"),
            (b"alice:x", b"secret", "auth-rejected"),
            (b"\xff", b"secret", "auth-malformed"),
        ] {
            let refused = access.admit(&apart(user, password)).await;
            assert_eq!(brief(&refused), expected, "{user:?}");
        }
    }

    #[tokio::test]
    async fn without_a_users_file_nobody_is_asked() {
        let access = snapshot("", None);
        let decision = access
            .admit(&request(
                "10.0.0.1",
                ClientCredentials::None,
                "ok.example",
                80,
                Kind::Http,
            ))
            .await;
        assert_eq!(decision, Decision::Allow { user: None });
    }

    #[tokio::test]
    async fn address_literals_meet_the_address_rules_at_once() {
        let access = snapshot("198.51.100.0/24\n", None);
        let decision = access
            .admit(&request(
                "10.0.0.1",
                ClientCredentials::None,
                "198.51.100.7",
                443,
                Kind::Connect,
            ))
            .await;
        assert_eq!(brief(&decision), "blocked-address");
        let local = access
            .admit(&request(
                "10.0.0.1",
                ClientCredentials::None,
                "127.0.0.1",
                80,
                Kind::Http,
            ))
            .await;
        assert_eq!(brief(&local), "local-target");
    }
}
