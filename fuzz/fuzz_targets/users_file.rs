//! The users-file parser (`--auth-file`). Invariants: no panic; every error names the
//! file and a line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = proxy_server::auth::parse_users(&text, "users.txt") {
        let lines = text.lines().count().max(1);
        for error in &errors.0 {
            assert!(error.line >= 1 && error.line <= lines, "{error}");
            assert!(error.to_string().starts_with("users.txt:"));
        }
    }
});
