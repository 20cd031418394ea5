//! Proxy authentication with the Basic scheme (RFC 7617) against the `--auth-file`
//! users. Decides only whether a `Proxy-Authorization` value names a known user with
//! the right password; the caller answers `407` with the challenge in `http::answer`, strips
//! the header before forwarding, and logs the user name. Passwords never leave this
//! module: no `Debug`, `Display` or error here contains one.

mod cache;
mod credentials;
mod users;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::error::AuthFailure;

pub use cache::{VERIFIED_CACHE_CAPACITY, VERIFIED_CACHE_TTL, VerifiedCache};
pub use credentials::Credentials;
pub use users::{Secret, Users, load_users, parse_users, sha256};

/// The realm named in the challenge.
pub const REALM: &str = "proxy-server";
/// bcrypt verifications allowed to run at once: the cores beyond one, at least one. Each
/// holds a core for tens of milliseconds; a flood of wrong passwords must queue here
/// rather than take every core from the connections already admitted (measured before
/// this bound: 300 guesses from 300 addresses held both cores of a two-core host for
/// 54 s), or fill tokio's blocking pool and starve file and DNS work.
pub fn concurrent_bcrypt_checks() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get().saturating_sub(1))
        .max(1)
}

/// Why a request was not authenticated. All three become `407`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Proxy-Authorization` field.
    Missing,
    /// A field that is not well-formed Basic credentials; the reason is for logs.
    Malformed(&'static str),
    /// Well-formed credentials with an unknown user or a wrong password.
    Rejected { user: String },
}

impl AuthError {
    pub fn brief(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth-missing",
            AuthError::Malformed(_) => "auth-malformed",
            AuthError::Rejected { .. } => "auth-rejected",
        }
    }
}

impl From<AuthError> for AuthFailure {
    fn from(error: AuthError) -> AuthFailure {
        AuthFailure {
            brief: error.brief(),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no Proxy-Authorization credentials"),
            AuthError::Malformed(why) => write!(f, "malformed Proxy-Authorization: {why}"),
            AuthError::Rejected { user } => write!(f, "wrong credentials for user {user:?}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Verifies credentials against one loaded users file.
#[derive(Debug)]
pub struct Authenticator {
    users: Users,
    cache: VerifiedCache,
    bcrypt_slots: Arc<Semaphore>,
    bcrypt_runs: AtomicU64,
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifiedCache({} entries)", self.len())
    }
}

impl Authenticator {
    pub fn new(users: Users) -> Authenticator {
        Authenticator::with_cache(users, VERIFIED_CACHE_CAPACITY, VERIFIED_CACHE_TTL)
    }

    /// As [`Authenticator::new`] with a chosen cache size and time limit.
    pub fn with_cache(users: Users, capacity: usize, ttl: Duration) -> Authenticator {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Authenticator {
            users,
            cache: VerifiedCache::new(capacity, ttl),
            bcrypt_slots: Arc::new(Semaphore::new(concurrent_bcrypt_checks())),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// The authenticated user name, or why not. `field` is the raw value of the
    /// request's `Proxy-Authorization` field, if any.
    pub async fn authenticate(&self, field: Option<&[u8]>) -> Result<String, AuthError> {
        let credentials = Credentials::parse(field.ok_or(AuthError::Missing)?)?;
        self.verify(&credentials).await
    }

    /// As [`Authenticator::authenticate`], for a user name and password given apart
    /// (SOCKS5 username/password authentication, RFC 1929).
    pub async fn authenticate_user_password(
        &self,
        user: &[u8],
        password: &[u8],
    ) -> Result<String, AuthError> {
        let credentials = Credentials::from_parts(user, password)?;
        self.verify(&credentials).await
    }

    /// The user, when these exact credentials were verified recently (the cache): known
    /// good, with no check to run.
    pub fn remembered(&self, credentials: &Credentials) -> Option<String> {
        let key = sha256(credentials.raw());
        self.cache
            .is_fresh(&key)
            .then(|| credentials.user().to_string())
    }

    /// The user, if the password is theirs. A success is remembered (see
    /// [`Authenticator::remembered`]).
    pub async fn verify(&self, credentials: &Credentials) -> Result<String, AuthError> {
        let user = credentials.user();
        let rejected = || AuthError::Rejected {
            user: user.to_string(),
        };
        let Some(secret) = self.users.get(user) else {
            // An unknown name costs what a known one does, so timing does not tell an
            // attacker which names exist: with bcrypt users in the file, the password
            // is checked against one of their hashes and the answer thrown away.
            if let Some(hash) = self.users.a_bcrypt_hash() {
                self.run_bcrypt(credentials, hash).await;
            }
            return Err(rejected());
        };
        let verified = match secret {
            // Comparing fixed-size digests in constant time leaks neither the
            // password's content nor its length through timing.
            Secret::Clear(digest) => {
                let verified = bool::from(sha256(credentials.password().as_bytes()).ct_eq(digest));
                if verified {
                    // Cheap to check again, but remembered so that a clear-text user
                    // is let in as a bcrypt one is while everyone's failure budget is
                    // spent (`limits`).
                    self.cache.insert(sha256(credentials.raw()));
                }
                verified
            }
            Secret::Bcrypt(hash) => self.verify_bcrypt(credentials, hash).await,
        };
        if verified {
            Ok(user.to_string())
        } else {
            Err(rejected())
        }
    }

    /// bcrypt is deliberately slow, so it runs on the blocking pool, a few at a time,
    /// and a success is remembered for [`VERIFIED_CACHE_TTL`].
    async fn verify_bcrypt(&self, credentials: &Credentials, hash: &Arc<str>) -> bool {
        let key = sha256(credentials.raw());
        if self.cache.is_fresh(&key) {
            return true;
        }
        let verified = self.run_bcrypt(credentials, hash).await;
        if verified {
            self.cache.insert(key);
        }
        verified
    }

    /// One bcrypt check on the blocking pool, at most [`concurrent_bcrypt_checks`] at once.
    async fn run_bcrypt(&self, credentials: &Credentials, hash: &Arc<str>) -> bool {
        let Ok(permit) = Arc::clone(&self.bcrypt_slots).acquire_owned().await else {
            return false;
        };
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let password = credentials.password().as_bytes().to_vec();
        let hash = Arc::clone(hash);
        let job = tokio::task::spawn_blocking(move || {
            // The permit lives as long as the work, even if the request is dropped.
            let _permit = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        });
        job.await.unwrap_or(false)
    }

    /// How many bcrypt verifications actually ran (cache misses), for statistics.
    pub fn bcrypt_verifications(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests;
