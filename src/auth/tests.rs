//! Tests for the authenticator: clear and bcrypt users, every refusal, the
//! verification cache, and that no password shows in any output.

use super::*;
use base64::Engine as _;

/// bcrypt's minimum cost keeps the test fast while exercising the real algorithm.
const TEST_COST: u32 = 4;

fn field(user_password: &str) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD.encode(user_password);
    format!("Basic {token}").into_bytes()
}

fn authenticator(ttl: Duration) -> Authenticator {
    let hash = bcrypt::hash("b-pass", TEST_COST).unwrap();
    let text = format!("alice:a-pass\nbob:{hash}\n");
    Authenticator::with_cache(parse_users(&text, "users.txt").unwrap(), 16, ttl)
}

async fn auth(a: &Authenticator, user_password: &str) -> Result<String, AuthError> {
    a.authenticate(Some(&field(user_password))).await
}

#[tokio::test]
async fn clear_text_password() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    assert_eq!(auth(&a, "alice:a-pass").await, Ok("alice".into()));
    let wrong = AuthError::Rejected {
        user: "alice".into(),
    };
    assert_eq!(auth(&a, "alice:a-pas").await, Err(wrong.clone()));
    assert_eq!(auth(&a, "alice:a-pass ").await, Err(wrong.clone()));
    assert_eq!(auth(&a, "alice:").await, Err(wrong));
    assert_eq!(a.bcrypt_verifications(), 0);
}

#[tokio::test]
async fn bcrypt_password_and_htpasswd_prefixes() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    assert_eq!(auth(&a, "bob:b-pass").await, Ok("bob".into()));
    assert_eq!(
        auth(&a, "bob:a-pass").await,
        Err(AuthError::Rejected { user: "bob".into() })
    );
    // htpasswd -nbB writes $2y$; the crate writes $2b$; older tools $2a$.
    let hash = bcrypt::hash("pw", TEST_COST).unwrap();
    for prefix in ["$2y$", "$2a$", "$2b$"] {
        let text = format!("carol:{prefix}{}\n", &hash[4..]);
        let a = Authenticator::new(parse_users(&text, "users.txt").unwrap());
        assert_eq!(auth(&a, "carol:pw").await, Ok("carol".into()), "{prefix}");
    }
}

/// With bcrypt users in the file, an unknown name runs bcrypt too (a decoy check whose
/// answer is thrown away), so its refusal takes as long as a known name's; with only
/// clear-text users no bcrypt runs at all.
#[tokio::test]
async fn unknown_users_cost_a_bcrypt_check_like_known_ones() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    let refused = auth(&a, "mallory:b-pass").await;
    assert_eq!(
        refused,
        Err(AuthError::Rejected {
            user: "mallory".into()
        }),
        "the decoy hash's password does not let an unknown user in"
    );
    assert_eq!(a.bcrypt_verifications(), 1);
    assert!(auth(&a, "mallory:b-pass").await.is_err());
    assert_eq!(a.bcrypt_verifications(), 2, "never cached");

    let clear = Authenticator::new(parse_users("alice:a-pass\n", "users.txt").unwrap());
    assert!(auth(&clear, "mallory:x").await.is_err());
    assert_eq!(clear.bcrypt_verifications(), 0);
}

#[tokio::test]
async fn unknown_user_and_user_case_matter() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    for creds in ["mallory:a-pass", "Alice:a-pass", ":a-pass"] {
        assert!(
            matches!(auth(&a, creds).await, Err(AuthError::Rejected { .. })),
            "{creds}"
        );
    }
}

#[tokio::test]
async fn missing_and_malformed_fields() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    assert_eq!(a.authenticate(None).await, Err(AuthError::Missing));
    for bad in [
        &b"Bearer abc"[..],
        b"Basic",
        b"Basic %%%",
        b"Basic YWxpY2U=",         // "alice": no colon
        b"Basic YWz/Y2U6YS1wYXNz", // invalid UTF-8
    ] {
        let got = a.authenticate(Some(bad)).await;
        assert!(
            matches!(got, Err(AuthError::Malformed(_))),
            "{bad:?}: {got:?}"
        );
    }
    assert_eq!(
        a.authenticate(Some(&b"bAsIc YWxpY2U6YS1wYXNz"[..])).await,
        Ok("alice".into())
    );
}

#[tokio::test]
async fn successful_bcrypt_verifications_are_cached() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    for _ in 0..5 {
        assert_eq!(auth(&a, "bob:b-pass").await, Ok("bob".into()));
    }
    assert_eq!(
        a.bcrypt_verifications(),
        1,
        "one bcrypt run, then cache hits"
    );
    for _ in 0..3 {
        assert!(auth(&a, "bob:wrong").await.is_err());
    }
    assert_eq!(a.bcrypt_verifications(), 4, "failures are never cached");
    assert_eq!(auth(&a, "bob:b-pass").await, Ok("bob".into()));
    assert_eq!(a.bcrypt_verifications(), 4);
}

#[tokio::test]
async fn expired_verifications_run_bcrypt_again() {
    let a = authenticator(Duration::ZERO);
    assert!(auth(&a, "bob:b-pass").await.is_ok());
    assert!(auth(&a, "bob:b-pass").await.is_ok());
    assert_eq!(a.bcrypt_verifications(), 2);
}

#[tokio::test]
async fn concurrent_bcrypt_checks_all_complete() {
    let a = Arc::new(authenticator(Duration::ZERO));
    let tasks: Vec<_> = (0..concurrent_bcrypt_checks() * 3)
        .map(|i| {
            let a = Arc::clone(&a);
            let creds = if i % 2 == 0 { "bob:b-pass" } else { "bob:nope" };
            tokio::spawn(async move { (i, auth(&a, creds).await) })
        })
        .collect();
    for task in tasks {
        let (i, result) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("deadline")
            .expect("task");
        assert_eq!(result.is_ok(), i % 2 == 0, "task {i}");
    }
}

#[tokio::test]
async fn no_password_in_any_output() {
    let a = authenticator(VERIFIED_CACHE_TTL);
    let err = auth(&a, "alice:hunter2-secret").await.unwrap_err();
    let shown = format!("{err} {err:?} {a:?} {}", err.brief());
    assert!(shown.contains("alice"));
    assert!(!shown.contains("hunter2") && !shown.contains("a-pass") && !shown.contains("b-pass"));
    assert!(!shown.contains("$2b$"), "{shown}");
}

#[test]
fn challenge_names_the_realm() {
    assert_eq!(
        crate::http::answer::PROXY_AUTHENTICATE,
        format!("Basic realm=\"{REALM}\"")
    );
}

/// A line written by Apache's `htpasswd -nbB alice 'correct horse'` (the `$2y$`
/// variant), so interoperability is checked against the real tool, not our own hashes.
const HTPASSWD_LINE: &str = "alice:$2y$05$fPj7g7UWf862AdxGkJUD.uogQhVKPbVoCJcnRgIZYGrtZT1/6aANW";

#[tokio::test]
async fn verifies_a_real_htpasswd_hash() {
    let a = Authenticator::new(parse_users(HTPASSWD_LINE, "users.txt").unwrap());
    assert_eq!(auth(&a, "alice:correct horse").await, Ok("alice".into()));
    assert!(auth(&a, "alice:correct horse ").await.is_err());
    assert!(auth(&a, "alice:Correct horse").await.is_err());
}
