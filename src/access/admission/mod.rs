//! The admission decision: may this client, with these credentials, reach this target
//! this way? One function for every front end — HTTP today, SOCKS5 and TLS listeners
//! next — from what the client said to [`Decision`]. The checks that need no DNS run
//! here, in a fixed order: client address, credentials, target host, CONNECT port (the
//! safe defaults and the blacklist), then the policy's ordered rules. The addresses a
//! name resolves to are checked by the dialer right before it connects, and so is the
//! rest of a rule evaluation that needs them (the decision's [`AddressCheck`]).
//! Pure apart from password verification (bcrypt runs on the blocking pool): no sockets,
//! no protocol.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Snapshot;
use crate::acl::{AddressCheck, Evaluation, Facts, Verdict, normalise, refusal};
use crate::error::{AuthFailure, Refusal};
use crate::limits::LimitSettings;
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
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead. `user` is the authenticated user (`None` without a login); `rule` the
    /// policy rule that allowed it and `limits` that rule's own limits (everyone's are in
    /// the snapshot). With `addresses`, a rule further down depends on the addresses the
    /// name resolves to: the dialer settles it before connecting and may still refuse,
    /// and then `rule` and `limits` are `None` until it has (the settled verdict comes
    /// back with the connection).
    Allow {
        user: Option<String>,
        rule: Option<Arc<str>>,
        limits: Option<Arc<LimitSettings>>,
        addresses: Option<AddressCheck>,
    },
    /// Refused by the policy, with the reason and the rule.
    Deny(Refusal),
    /// Credentials are missing, malformed or wrong; with the policy rule that would
    /// need them (the one that decided without them), when a rule did.
    AuthRequired(AuthFailure, Option<Arc<str>>),
}

/// The label for a request without credentials that a rule naming users could allow.
pub const AUTH_MISSING: AuthFailure = AuthFailure {
    brief: "auth-missing",
};

impl Snapshot {
    /// Decides on one request with this version of the rules.
    pub async fn admit(&self, request: &Admission<'_>) -> Decision {
        let policy = &self.policy;
        if let Err(denial) = policy.check_client(request.client) {
            return Decision::Deny(denial.into());
        }
        let user = match self.authenticate(request.credentials).await {
            Ok(user) => user,
            Err(failure) => return Decision::AuthRequired(failure, None),
        };
        let host = normalise(request.target.host);
        if let Err(denial) = policy.check_normalised(&host) {
            return Decision::Deny(denial.into());
        }
        if request.target.is_tunnel()
            && let Err(denial) = policy.check_connect_port(request.target.port)
        {
            return Decision::Deny(denial.into());
        }
        let facts = Facts {
            user: user.as_deref(),
            client: crate::acl::canonical_ip(request.client),
            host: &host,
            port: request.target.port,
            method: request.method,
            now: self.rules.uses_hours().then(|| self.clock.now()),
        };
        match self.rules.evaluate(&facts) {
            Evaluation::Decided(verdict) => decision(user, verdict),
            Evaluation::Pending(check) => Decision::Allow {
                user,
                rule: None,
                limits: None,
                addresses: Some(check),
            },
        }
    }

    /// The user the credentials prove. Without a users file nobody is asked. With one,
    /// every request must log in — unless some rule names `users`: then a request
    /// without credentials meets the rules anonymously, and is asked to log in only when
    /// no rule allows it but one naming users could. Wrong credentials are refused either way.
    /// A front end that authenticates before it knows the target (SOCKS5) asks this first;
    /// [`Snapshot::admit`] asks it again, which costs a digest or a cache lookup.
    pub async fn authenticate(
        &self,
        credentials: ClientCredentials<'_>,
    ) -> Result<Option<String>, AuthFailure> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(None);
        };
        let verified = match credentials {
            ClientCredentials::None if self.rules.names_users() => return Ok(None),
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

/// The decision a settled rule verdict makes.
pub fn decision(user: Option<String>, verdict: Verdict) -> Decision {
    match verdict {
        Verdict::Allow { rule, limits } => Decision::Allow {
            user,
            rule,
            limits,
            addresses: None,
        },
        Verdict::Deny { rule } => Decision::Deny(refusal(rule)),
        Verdict::AuthRequired { rule } => Decision::AuthRequired(AUTH_MISSING, rule),
    }
}

#[cfg(test)]
mod tests;
