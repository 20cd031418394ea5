//! The admission decision: may this client, with these credentials, reach this target
//! this way? One function for every front end — HTTP today, SOCKS5 and TLS listeners
//! next — from what the client said to [`Decision`]. The checks that need no DNS run
//! here, in a fixed order: client address, credentials, target host, CONNECT port (the
//! safe defaults and the blacklist), then the policy's ordered rules. The addresses a
//! name resolves to are checked by the dialer right before it connects, and so is the
//! rest of a rule evaluation that needs them (the decision's [`AddressCheck`]).
//!
//! Credentials from every front end take one path, [`Snapshot::authenticate`]: a client
//! address blocked for failing is refused before its credentials are read (no verdict on
//! its guess); credentials the verification cache knows are let in without a check; any
//! other check first reserves a failure slot, for the address and for everyone
//! (`limits`), runs, and gives the slot back on success or keeps it as a failure. So a
//! failure counts wherever it happened, concurrent guesses cannot outrun the limit, and a
//! flood from many addresses is throttled while known users still get in.
//! Pure apart from password verification (bcrypt runs on the blocking pool) and the
//! limiter's failure counts: no sockets, no protocol.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Snapshot;
use crate::acl::{AddressCheck, Evaluation, Facts, Verdict, normalise, refusal};
use crate::auth::Credentials;
use crate::error::{AuthFailure, OverLimit, Refusal};
use crate::limits::{LimitSettings, Limiter};
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
    /// Credentials were not checked: the client address is blocked, or a failure
    /// budget is spent.
    Limited(OverLimit),
}

/// Why a client is not logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAuthenticated {
    /// Missing, malformed or wrong credentials.
    Failed(AuthFailure),
    /// Not checked, and no verdict given: see [`Decision::Limited`].
    Limited(OverLimit),
}

/// The label for a request without credentials that a rule naming users could allow.
pub const AUTH_MISSING: AuthFailure = AuthFailure {
    brief: "auth-missing",
};

impl Snapshot {
    /// Decides on one request with this version of the rules; `limiter` holds the
    /// authentication failures counted so far.
    pub async fn admit(&self, request: &Admission<'_>, limiter: &Limiter) -> Decision {
        let policy = &self.baseline;
        if let Err(denial) = policy.check_client(request.client) {
            return Decision::Deny(denial.into());
        }
        let credentials = request.credentials;
        let user = match self
            .authenticate(credentials, request.client, limiter)
            .await
        {
            Ok(user) => user,
            Err(NotAuthenticated::Failed(failure)) => return Decision::AuthRequired(failure, None),
            Err(NotAuthenticated::Limited(over)) => return Decision::Limited(over),
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

    /// The user the credentials prove, by the one path every front end takes (see the
    /// module's introduction). Without a users file nobody is asked. With one, every
    /// request must log in — unless some rule names `users`: then a request without
    /// credentials meets the rules anonymously, and is asked to log in only when no rule
    /// allows it but one naming users could. Wrong credentials are refused either way,
    /// and count as a failure of `client`; asking without any is how clients learn to
    /// log in, and is not one. A front end that authenticates before it knows the target
    /// (SOCKS5) asks this first; [`Snapshot::admit`] asks it again, which costs a cache
    /// lookup.
    pub async fn authenticate(
        &self,
        credentials: ClientCredentials<'_>,
        client: IpAddr,
        limiter: &Limiter,
    ) -> Result<Option<String>, NotAuthenticated> {
        limiter
            .auth_check(client, &self.limits)
            .map_err(NotAuthenticated::Limited)?;
        let Some(authenticator) = &self.authenticator else {
            return Ok(None);
        };
        let parsed = match credentials {
            ClientCredentials::None if self.rules.names_users() => return Ok(None),
            ClientCredentials::None => return Err(NotAuthenticated::Failed(AUTH_MISSING)),
            ClientCredentials::ProxyAuthorization(field) => Credentials::parse(field),
            ClientCredentials::UserPassword { user, password } => {
                Credentials::from_parts(user, password)
            }
        };
        if let Some(user) = parsed
            .as_ref()
            .ok()
            .and_then(|c| authenticator.remembered(c))
        {
            return Ok(Some(user));
        }
        let attempt = limiter
            .auth_attempt(client, &self.limits)
            .map_err(NotAuthenticated::Limited)?;
        let verified = match parsed {
            Ok(credentials) => authenticator.verify(&credentials).await,
            Err(malformed) => Err(malformed),
        };
        match verified {
            Ok(user) => {
                attempt.succeeded();
                Ok(Some(user))
            }
            Err(error) => {
                attempt.failed();
                Err(NotAuthenticated::Failed(error.into()))
            }
        }
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
