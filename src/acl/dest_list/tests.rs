//! Tests for the blacklist parser and matcher: every rule kind, hosts-file lines and
//! every kind of bad line with its exact line number.

use super::*;

fn rules(text: &str) -> DestList {
    parse(text, "rules.txt").expect("rules parse")
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, "rules.txt") {
        Ok(_) => panic!("expected errors for {text:?}"),
        Err(FileErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn exact_rule_matches_only_that_host() {
    let r = rules("example.com\n");
    assert!(r.blocks_name("example.com"));
    assert!(!r.blocks_name("www.example.com"));
    assert!(!r.blocks_name("notexample.com"));
    assert!(!r.blocks_name("example.co"));
}

#[test]
fn rule_spelling_is_canonicalised() {
    let r = rules("Example.COM.\n");
    assert!(r.blocks_name("example.com"));
}

#[test]
fn wildcard_matches_any_depth_but_not_apex_or_lookalike() {
    let r = rules("*.ads.com\n");
    assert!(r.blocks_name("x.ads.com"));
    assert!(r.blocks_name("a.b.c.ads.com"));
    assert!(!r.blocks_name("ads.com"));
    assert!(!r.blocks_name("notads.com"));
    assert!(!r.blocks_name("ads.com.evil"));
    assert!(!r.blocks_name("com"));
}

#[test]
fn wildcard_and_apex_together() {
    let r = rules("*.example.com\nexample.com\n");
    assert!(r.blocks_name("example.com"));
    assert!(r.blocks_name("deep.www.example.com"));
    assert!(!r.blocks_name("notexample.com"));
}

#[test]
fn cidr_and_bare_address_rules() {
    let r = rules("10.0.0.0/8\nfd00::/8\n192.0.2.7\n2001:db8::1\n::ffff:198.51.100.1\n");
    assert!(r.blocks_addr(addr("10.20.30.40")));
    assert!(!r.blocks_addr(addr("11.0.0.1")));
    assert!(r.blocks_addr(addr("fdab::1")));
    assert!(
        r.blocks_addr(addr("::ffff:10.0.0.1")),
        "v4-mapped meets v4 rules"
    );
    assert!(r.blocks_addr(addr("192.0.2.7")));
    assert!(!r.blocks_addr(addr("192.0.2.8")));
    assert!(r.blocks_addr(addr("2001:db8::1")));
    assert!(!r.blocks_addr(addr("2001:db8::2")));
    assert!(
        r.blocks_addr(addr("198.51.100.1")),
        "mapped rule stored as v4"
    );
    assert_eq!(r.counts(), (0, 0, 5));
}

#[test]
fn comments_blank_lines_and_trailing_comments() {
    let r = rules(
        "# header\n\n   \nexample.com # tracker\n*.ads.com#x\n10.0.0.0/8 # net\n  # indented\n",
    );
    assert_eq!(r.counts(), (1, 1, 1));
    assert!(r.blocks_name("example.com"));
}

#[test]
fn hosts_file_lines_become_exact_rules() {
    let text = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
                0.0.0.0 0.0.0.0\n0.0.0.0 tracker.com\n127.0.0.1 a.com B.com # two\n\
                0.0.0.0\tTabbed.example\n";
    let r = rules(text);
    for name in ["tracker.com", "a.com", "b.com", "tabbed.example"] {
        assert!(r.blocks_name(name), "{name}");
    }
    assert!(
        !r.blocks_name("localhost"),
        "hosts-file self names are skipped"
    );
    assert!(!r.blocks_name("ip6-localhost"));
    assert!(!r.blocks_name("sub.tracker.com"));
    assert_eq!(r.counts(), (4, 0, 0));
}

#[test]
fn bare_localhost_rule_is_honoured() {
    assert!(rules("localhost\n").blocks_name("localhost"));
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "good.com\n\
                10.0.0.0/33\n\
                *.\n\
                bad_host!.com\n\
                10.0.0.1/8\n\
                a.*.com\n\
                .ads.com\n\
                two words\n\
                0.0.0.0 1.2.3.4\n\
                a..b\n\
                fd00::/129\n\
                bücher.de\n";
    let errs = errors(text);
    let want = [
        ("rules.txt:2: ", "invalid CIDR"),
        ("rules.txt:3: ", "'*.' needs a domain"),
        ("rules.txt:4: ", "invalid character '!'"),
        ("rules.txt:5: ", "did you mean 10.0.0.0/8?"),
        ("rules.txt:6: ", "'*' is only allowed"),
        ("rules.txt:7: ", "leading dot"),
        ("rules.txt:8: ", "one rule per line"),
        ("rules.txt:9: ", "not a host name"),
        ("rules.txt:10: ", "empty label"),
        ("rules.txt:11: ", "invalid CIDR"),
        ("rules.txt:12: ", "punycode"),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (err, (prefix, reason)) in errs.iter().zip(want) {
        assert!(
            err.starts_with(prefix) && err.contains(reason),
            "{err} vs {prefix}{reason}"
        );
    }
}

#[test]
fn unreadable_file_is_one_clear_error() {
    let Err(FileErrors(errs)) = load(Path::new("/nonexistent/blocked.txt")) else {
        panic!("missing file must fail");
    };
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 0);
    assert!(
        errs[0]
            .to_string()
            .starts_with("/nonexistent/blocked.txt: cannot read rules file")
    );
}

#[test]
fn empty_file_blocks_nothing() {
    let r = rules("# nothing yet\n");
    assert_eq!(r.counts(), (0, 0, 0));
    assert!(!r.blocks_name("example.com"));
    assert!(!r.blocks_addr(addr("10.0.0.1")));
}
