//! The ACL rules-file parser (`--blacklist`). Invariants: no panic; every error names
//! the file and a line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match proxy_server::acl::parse(&text, "rules.txt") {
        Ok(rules) => {
            let _ = rules.blocks_name("example.com");
            let _ = rules.blocks_addr(std::net::IpAddr::from([127, 0, 0, 1]));
        }
        Err(errors) => {
            let lines = text.lines().count().max(1);
            for error in &errors.0 {
                assert!(error.line >= 1 && error.line <= lines, "{error}");
                assert!(error.to_string().starts_with("rules.txt:"));
            }
        }
    }
});
