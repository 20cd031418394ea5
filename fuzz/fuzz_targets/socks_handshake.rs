//! The SOCKS5 parsers (RFC 1928 greeting and request, RFC 1929 username/password).
//! Invariants: no panic; a parsed message never claims more bytes than it was given, and
//! parsing only those bytes gives the same message; any shorter prefix asks for more or
//! fails, never parses to something else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_server::socks::wire::{self, Parsed};

fn check<T: PartialEq + std::fmt::Debug>(parse: fn(&[u8]) -> Parsed<T>, data: &[u8]) {
    if let Ok(Some((message, length))) = parse(data) {
        assert!(length <= data.len());
        assert_eq!(parse(&data[..length]), Ok(Some((message, length))));
        if length > 0 {
            assert!(!matches!(parse(&data[..length - 1]), Ok(Some(_))));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(wire::parse_greeting, data);
    check(wire::parse_user_password, data);
    check(wire::parse_request, data);
});
