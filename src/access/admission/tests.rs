//! Admission: the order of the checks, credentials, and the policy's rules behind the
//! safe defaults (407 versus 403, time windows on a set clock, checks left to the dialer).

use std::sync::Arc;

use base64::Engine as _;

use super::*;
use crate::acl::{Baseline, PortSet, parse, parse_client_net};
use crate::auth::{Authenticator, parse_users};
use crate::target::Kind;

fn snapshot(rules: &str, users: Option<&str>) -> Snapshot {
    let mut policy = Baseline::with_rules(parse(rules, "rules.txt").unwrap());
    policy.connect_ports = "443,8443".parse::<PortSet>().unwrap();
    policy.allow_clients = Some(vec![parse_client_net("10.0.0.0/8").unwrap()]);
    Snapshot {
        baseline: Arc::new(policy),
        authenticator: users
            .map(|text| Arc::new(Authenticator::new(parse_users(text, "users.txt").unwrap()))),
        rules: Arc::default(),
        limits: Arc::default(),
        clock: Arc::new(crate::acl::SystemClock),
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

impl Snapshot {
    /// [`Snapshot::admit`] with no authentication failures counted before.
    async fn admit_fresh(&self, request: &Admission<'_>) -> Decision {
        let limiter = Limiter::with_capacity(16, Arc::default());
        self.admit(request, &limiter).await
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
        Decision::AuthRequired(failure, _) => failure.brief,
        Decision::Limited(over) => over.brief,
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
            .admit_fresh(&request(client, credentials, host, port, kind))
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
        .admit_fresh(&request(
            "10.0.0.1",
            ClientCredentials::ProxyAuthorization(&good),
            "ok.example",
            443,
            Kind::Connect,
        ))
        .await;
    assert!(
        matches!(&allowed, Decision::Allow { user: Some(u), .. } if u == "alice"),
        "{allowed:?}"
    );
    let wrong = basic("alice:guess");
    let refused = access
        .admit_fresh(&request(
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
async fn without_a_users_file_nobody_is_asked() {
    let access = snapshot("", None);
    let decision = access
        .admit_fresh(&request(
            "10.0.0.1",
            ClientCredentials::None,
            "ok.example",
            80,
            Kind::Http,
        ))
        .await;
    assert!(matches!(decision, Decision::Allow { user: None, .. }));
}

#[tokio::test]
async fn address_literals_meet_the_address_rules_at_once() {
    let access = snapshot("198.51.100.0/24\n", None);
    let decision = access
        .admit_fresh(&request(
            "10.0.0.1",
            ClientCredentials::None,
            "198.51.100.7",
            443,
            Kind::Connect,
        ))
        .await;
    assert_eq!(brief(&decision), "blocked-address");
    let local = access
        .admit_fresh(&request(
            "10.0.0.1",
            ClientCredentials::None,
            "127.0.0.1",
            80,
            Kind::Http,
        ))
        .await;
    assert_eq!(brief(&local), "local-target");
}

/// A snapshot with a users file, the policy text `policy` (TOML) and the clock at `now`.
fn with_policy(policy: &str, now: &str) -> Snapshot {
    let (file, errors) =
        crate::config::parse_file(policy, "p.toml", std::path::Path::new("."), &[]);
    assert!(errors.is_empty(), "{errors:?}");
    let (day, time) = now.split_once(' ').unwrap();
    Snapshot {
        baseline: Arc::new(Baseline::default()),
        authenticator: Some(Arc::new(Authenticator::new(
            parse_users("alice:secret\nbob:secret\n", "users.txt").unwrap(),
        ))),
        rules: Arc::new(file.rules),
        limits: Arc::default(),
        clock: Arc::new(crate::acl::FixedClock(
            crate::acl::WeekTime::parse(day, time).unwrap(),
        )),
    }
}

const STAFF_POLICY: &str = r#"
default = "deny"
[groups]
staff = ["alice"]
[[rules]]
name = "staff to code"
action = "allow"
users = ["@staff"]
dest = ["github.com"]
hours = ["Mon-Fri 08:00-18:00"]
limits = { requests_per_second = 5 }
[[rules]]
name = "public"
action = "allow"
dest = ["public.example"]
"#;

/// An allow list by network: names wait for their addresses.
const NETWORK_POLICY: &str = r#"
default = "deny"
[[rules]]
name = "lab"
action = "allow"
dest = ["192.0.2.0/24"]
"#;

fn ask<'a>(credentials: ClientCredentials<'a>, host: &'a str) -> Admission<'a> {
    request("10.0.0.1", credentials, host, 443, Kind::Connect)
}

#[tokio::test]
async fn anonymous_requests_a_user_rule_could_allow_are_asked_to_log_in() {
    let access = with_policy(STAFF_POLICY, "Tue 10:00");
    let none = ClientCredentials::None;
    assert_eq!(
        brief(&access.admit_fresh(&ask(none, "github.com")).await),
        "auth-missing"
    );
    let public = access.admit_fresh(&ask(none, "public.example")).await;
    assert!(
        matches!(&public, Decision::Allow { user: None, rule: Some(r), .. } if r.contains("public")),
        "{public:?}"
    );
    assert_eq!(
        brief(&access.admit_fresh(&ask(none, "other.example")).await),
        "policy-deny"
    );
    let alice = basic("alice:secret");
    let allowed = access
        .admit_fresh(&ask(
            ClientCredentials::ProxyAuthorization(&alice),
            "github.com",
        ))
        .await;
    let Decision::Allow {
        user,
        rule,
        limits,
        addresses,
    } = allowed
    else {
        panic!("alice may reach github.com: {allowed:?}");
    };
    assert_eq!(user.as_deref(), Some("alice"));
    assert!(rule.is_some_and(|r| r.starts_with("\"staff to code\" (rule 1, p.toml:")));
    assert_eq!(limits.and_then(|l| l.requests_per_second), Some(5));
    assert!(addresses.is_none());
    let bob = basic("bob:secret");
    let refused = access
        .admit_fresh(&ask(
            ClientCredentials::ProxyAuthorization(&bob),
            "github.com",
        ))
        .await;
    assert_eq!(
        brief(&refused),
        "policy-deny",
        "logged in, not allowed: 403"
    );
    let Decision::Deny(refusal) = refused else {
        unreachable!()
    };
    assert!(
        refusal.reason.contains("default deny (p.toml:2)"),
        "{}",
        refusal.reason
    );
    let wrong = basic("alice:guess");
    let rejected = access
        .admit_fresh(&ask(
            ClientCredentials::ProxyAuthorization(&wrong),
            "public.example",
        ))
        .await;
    assert_eq!(
        brief(&rejected),
        "auth-rejected",
        "wrong credentials never pass"
    );
}

#[tokio::test]
async fn time_windows_read_the_snapshot_clock() {
    let alice = basic("alice:secret");
    let credentials = ClientCredentials::ProxyAuthorization(&alice);
    for (now, expected) in [
        ("Fri 17:59", "allow"),
        ("Fri 18:00", "policy-deny"),
        ("Sat 10:00", "policy-deny"),
        ("Mon 08:00", "allow"),
    ] {
        let access = with_policy(STAFF_POLICY, now);
        let decision = access.admit_fresh(&ask(credentials, "github.com")).await;
        assert_eq!(brief(&decision), expected, "{now}");
    }
}

#[tokio::test]
async fn network_rules_leave_a_check_for_the_dialer_and_literals_settle_at_once() {
    let mut access = with_policy(NETWORK_POLICY, "Tue 10:00");
    access.authenticator = None;
    let none = ClientCredentials::None;
    let pending = access.admit_fresh(&ask(none, "lab.example")).await;
    let Decision::Allow {
        rule: None,
        addresses: Some(check),
        ..
    } = pending
    else {
        panic!("a name may resolve into 192.0.2.0/24: {pending:?}");
    };
    let inside: std::net::SocketAddr = "192.0.2.7:443".parse().unwrap();
    let outside: std::net::SocketAddr = "198.51.100.7:443".parse().unwrap();
    assert!(matches!(
        check.settle(&[inside]),
        crate::acl::Verdict::Allow { .. }
    ));
    assert!(matches!(
        check.settle(&[inside, outside]),
        crate::acl::Verdict::Deny { .. }
    ));
    let literal = access.admit_fresh(&ask(none, "192.0.2.9")).await;
    assert!(matches!(
        literal,
        Decision::Allow {
            addresses: None,
            rule: Some(_),
            ..
        }
    ));
}

#[tokio::test]
async fn safe_defaults_apply_before_the_rules() {
    let allow_all = "[[rules]]\nname = \"all\"\naction = \"allow\"\n";
    let mut access = with_policy(allow_all, "Tue 10:00");
    access.authenticator = None;
    access.baseline = Arc::new(Baseline {
        connect_ports: "443".parse::<PortSet>().unwrap(),
        ..Baseline::default()
    });
    let none = ClientCredentials::None;
    assert_eq!(
        brief(&access.admit_fresh(&ask(none, "127.0.0.1")).await),
        "local-target"
    );
    let smtp = request("10.0.0.1", none, "mail.example", 25, Kind::Connect);
    assert_eq!(brief(&access.admit_fresh(&smtp).await), "connect-port");
    assert_eq!(
        brief(&access.admit_fresh(&ask(none, "mail.example")).await),
        "allow"
    );
}

#[tokio::test]
async fn without_rules_naming_users_every_request_logs_in_as_before() {
    let access = with_policy("[[rules]]\naction = \"allow\"\n", "Tue 10:00");
    let decision = access
        .admit_fresh(&ask(ClientCredentials::None, "example.com"))
        .await;
    assert_eq!(brief(&decision), "auth-missing");
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
    let allowed = access.admit_fresh(&apart(b"alice", b"secret")).await;
    assert!(
        matches!(&allowed, Decision::Allow { user: Some(u), .. } if u == "alice"),
        "{allowed:?}"
    );
    for (user, password, expected) in [
        (&b"alice"[..], &b"guess"[..], "auth-rejected"),
        (b"bob", b"secret", "auth-rejected"),
        (b"alice:x", b"secret", "auth-rejected"),
        (b"\xff", b"secret", "auth-malformed"),
    ] {
        let refused = access.admit_fresh(&apart(user, password)).await;
        assert_eq!(brief(&refused), expected, "{user:?}");
    }
}

/// A snapshot with one bcrypt user (the lowest cost) and authentication limits, and a
/// limiter to count into.
fn limited(per_minute: u32, total: Option<u32>) -> (Snapshot, Limiter) {
    let hash = bcrypt::hash("secret", 4).unwrap();
    let mut access = snapshot("", Some(&format!("alice:{hash}\n")));
    access.limits = Arc::new(LimitSettings {
        auth_failures_per_minute: Some(per_minute),
        auth_failures_per_minute_total: total,
        ..LimitSettings::default()
    });
    (access, Limiter::with_capacity(64, Arc::default()))
}

fn bcrypt_runs(access: &Snapshot) -> u64 {
    access
        .authenticator
        .as_ref()
        .unwrap()
        .bcrypt_verifications()
}

async fn login(
    access: &Snapshot,
    limiter: &Limiter,
    client: &str,
    password: &[u8],
) -> &'static str {
    let credentials = ClientCredentials::UserPassword {
        user: b"alice",
        password,
    };
    let client = client.parse().unwrap();
    match access.authenticate(credentials, client, limiter).await {
        Ok(_) => "ok",
        Err(NotAuthenticated::Failed(failure)) => failure.brief,
        Err(NotAuthenticated::Limited(over)) => over.brief,
    }
}

/// Issue 29, degrade: sixty wrong passwords at once from one address against a limit
/// of ten run ten bcrypt checks (sixty before the slot was reserved ahead of the check);
/// then the address is blocked, and its right password gets no check and no verdict.
#[tokio::test]
async fn sixty_guesses_at_once_run_ten_checks_then_none() {
    let (access, limiter) = limited(10, None);
    let guesses = (0..60).map(|_| login(&access, &limiter, "10.0.0.1", b"guess"));
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|a| **a == "auth-rejected").count();
    assert_eq!((checked, bcrypt_runs(&access)), (10, 10), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| ["auth-rejected", "auth_busy"].contains(a))
    );
    assert_eq!(
        login(&access, &limiter, "10.0.0.1", b"secret").await,
        "auth_blocked"
    );
    assert_eq!(bcrypt_runs(&access), 10, "no check for a blocked address");
    assert_eq!(login(&access, &limiter, "10.0.0.2", b"secret").await, "ok");
}

/// With everyone's budget spent, new checks wait for it, but a login the cache knows
/// still gets in without one; the first request with no credentials is not a failure.
#[tokio::test]
async fn known_logins_get_in_while_everyone_budget_is_spent() {
    let (access, limiter) = limited(5, Some(3));
    assert_eq!(login(&access, &limiter, "10.0.0.9", b"secret").await, "ok");
    for n in 1..=3 {
        let client = format!("10.0.1.{n}");
        assert_eq!(
            login(&access, &limiter, &client, b"guess").await,
            "auth-rejected"
        );
    }
    let runs = bcrypt_runs(&access);
    assert_eq!(
        login(&access, &limiter, "10.0.1.4", b"guess").await,
        "auth_throttled"
    );
    assert_eq!(login(&access, &limiter, "10.0.1.5", b"secret").await, "ok");
    assert_eq!(bcrypt_runs(&access), runs, "no check ran for either");
    let anonymous = access.authenticate(
        ClientCredentials::None,
        "10.0.1.6".parse().unwrap(),
        &limiter,
    );
    assert_eq!(anonymous.await, Err(NotAuthenticated::Failed(AUTH_MISSING)));
}
