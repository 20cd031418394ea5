//! The Proxy-Authorization decoder (`Basic` credentials, RFC 7617). Invariants: no
//! panic; accepted credentials split at the first colon (a user-id has none) and Debug
//! never shows the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_server::auth::Credentials;

fuzz_target!(|data: &[u8]| {
    if let Ok(credentials) = Credentials::parse(data) {
        let (user, password) = (credentials.user(), credentials.password());
        assert!(!user.contains(':'));
        assert_eq!(credentials.raw(), format!("{user}:{password}").as_bytes());
        let debug = format!("{credentials:?}");
        let redacted = format!("Credentials {{ user: {user:?}, password: \"<redacted>\" }}");
        assert_eq!(debug, redacted, "Debug shows more than the user name");
    }
});
