//! Tests for the access decisions: host spellings, addresses after resolution,
//! the local-target default, connect ports and allowed clients.

use super::*;
use crate::acl::parse;

fn policy(rules: &str) -> Baseline {
    Baseline::with_rules(parse(rules, "rules.txt").unwrap())
}

fn sock(s: &str) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), 443)
}

#[test]
fn host_spellings_all_meet_the_name_rules() {
    let p = policy("example.com\n*.ads.com\n");
    for host in [
        "example.com",
        "EXAMPLE.com",
        "example.com.",
        "example.com:443",
        "Example.Com.:8080",
        "x.ads.com",
        "A.B.Ads.Com.:443",
    ] {
        assert!(
            matches!(p.check_host(host), Err(Denial::BlockedHost(Some(_)))),
            "{host}"
        );
    }
    for host in [
        "notexample.com",
        "ads.com",
        "www.example.com",
        "notads.com:443",
    ] {
        assert_eq!(p.check_host(host), Ok(()), "{host}");
    }
}

#[test]
fn address_literals_meet_cidr_rules_in_check_host() {
    let mut p = policy("10.0.0.0/8\nfd00::/8\n");
    p.allow_local_targets = true;
    let listed = Listed {
        file: "rules.txt".into(),
        line: 1,
        entry: crate::acl::Entry::Net("10.0.0.0/8".parse().unwrap()),
    };
    let ten = Denial::BlockedAddress("10.1.2.3".parse().unwrap(), Some(listed));
    assert_eq!(p.check_host("10.1.2.3"), Err(ten.clone()));
    assert_eq!(p.check_host("10.1.2.3:80"), Err(ten.clone()));
    assert_eq!(p.check_host("[::ffff:10.1.2.3]:443"), Err(ten));
    assert!(matches!(
        p.check_host("[fd00::5]"),
        Err(Denial::BlockedAddress(..))
    ));
    assert_eq!(p.check_host("11.0.0.1"), Ok(()));
}

#[test]
fn local_targets_are_refused_by_default() {
    let p = policy("");
    for ip in [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "febf::1",
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::169.254.169.254",
        "64:ff9b::",
    ] {
        assert!(
            matches!(p.check_addrs(&[sock(ip)]), Err(Denial::LocalTarget(_))),
            "{ip}"
        );
    }
    for ip in [
        "192.0.2.1",
        "10.0.0.1",
        "2001:db8::1",
        "fec0::1",
        "64:ff9b::192.0.2.1",
    ] {
        assert_eq!(p.check_addrs(&[sock(ip)]), Ok(()), "{ip}");
    }
    assert!(p.check_host("[::1]:443").is_err());
    assert!(p.check_host("[64:ff9b::7f00:1]:443").is_err());
}

#[test]
fn nat64_addresses_meet_the_rules_of_the_address_they_embed() {
    let p = policy("10.0.0.0/8\n");
    assert!(matches!(
        p.check_addrs(&[sock("64:ff9b::10.1.2.3")]),
        Err(Denial::BlockedAddress(..))
    ));
    assert_eq!(p.check_addrs(&[sock("64:ff9b::11.1.2.3")]), Ok(()));
}

#[test]
fn allow_local_targets_lifts_only_the_default_not_the_rules() {
    let mut p = policy("127.0.0.2/32\n");
    p.allow_local_targets = true;
    assert_eq!(p.check_addrs(&[sock("127.0.0.1"), sock("::1")]), Ok(()));
    assert!(matches!(
        p.check_addrs(&[sock("127.0.0.2")]),
        Err(Denial::BlockedAddress(..))
    ));
}

#[test]
fn one_bad_resolved_address_refuses_them_all() {
    let p = policy("192.0.2.0/24\n");
    let mixed = [sock("198.51.100.1"), sock("2001:db8::1"), sock("192.0.2.9")];
    assert!(matches!(
        p.check_addrs(&mixed),
        Err(Denial::BlockedAddress(..))
    ));
    let with_local = [sock("198.51.100.1"), sock("127.0.0.1")];
    assert!(matches!(
        p.check_addrs(&with_local),
        Err(Denial::LocalTarget(_))
    ));
}

/// The upstream module resolves with `tokio::net::lookup_host` (getaddrinfo) and
/// passes every result to `check_addrs`; numeric spellings that `IpAddr::from_str`
/// does not accept must still come back as 127.0.0.1 there.
#[tokio::test]
async fn odd_loopback_spellings_resolve_to_loopback_and_are_caught() {
    let p = policy("127.0.0.0/8\n");
    for spelling in ["127.1", "2130706433", "0x7f.0.0.1", "localhost"] {
        assert_eq!(
            p.check_host(spelling),
            Ok(()),
            "{spelling} is a name, not a literal"
        );
        let resolved: Vec<SocketAddr> = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((spelling, 443)),
        )
        .await
        .expect("lookup deadline")
        .expect("numeric lookup")
        .collect();
        assert!(!resolved.is_empty(), "{spelling}");
        if spelling != "localhost" {
            assert_eq!(resolved, vec![sock("127.0.0.1")], "{spelling}");
        }
        // localhost may also resolve to ::1, which the local-target default catches.
        assert!(
            p.check_addrs(&resolved).is_err(),
            "{spelling}: {resolved:?}"
        );
    }
}

#[test]
fn connect_ports() {
    let mut p = policy("");
    assert_eq!(p.check_connect_port(443), Ok(()));
    assert_eq!(p.check_connect_port(25), Err(Denial::ConnectPort(25)));
    p.connect_ports = "443,8443,1024-65535".parse().unwrap();
    assert_eq!(p.check_connect_port(5432), Ok(()));
    assert_eq!(p.check_connect_port(22), Err(Denial::ConnectPort(22)));
}

#[test]
fn allowed_clients() {
    let mut p = policy("");
    assert_eq!(p.check_client("203.0.113.9".parse().unwrap()), Ok(()));
    p.allow_clients = Some(vec![
        parse_client_net("10.0.0.0/8").unwrap(),
        parse_client_net("192.0.2.7").unwrap(),
        parse_client_net("fd00::/8").unwrap(),
    ]);
    for ok in ["10.9.9.9", "::ffff:10.0.0.1", "192.0.2.7", "fd00::1"] {
        assert_eq!(p.check_client(ok.parse().unwrap()), Ok(()), "{ok}");
    }
    for no in ["192.0.2.8", "11.0.0.1", "::1", "127.0.0.1"] {
        assert!(matches!(
            p.check_client(no.parse().unwrap()),
            Err(Denial::ClientNotAllowed(_))
        ));
    }
    assert!(parse_client_net("10.0.0.0/40").is_err());
    assert!(parse_client_net("clients").unwrap_err().contains("neither"));
}

#[test]
fn denial_bodies_and_labels() {
    let local = Denial::LocalTarget("127.0.0.1".parse().unwrap());
    assert!(local.to_string().contains("--allow-local-targets"));
    assert!(Denial::ConnectPort(25).to_string().contains("port 25"));
    for d in [
        Denial::ClientNotAllowed("10.0.0.1".parse().unwrap()),
        Denial::BlockedHost(None),
        Denial::BlockedAddress("10.0.0.1".parse().unwrap(), None),
        local,
        Denial::ConnectPort(25),
    ] {
        assert!(!d.to_string().contains('\n'), "one line: {d}");
        assert!(
            !d.to_string().ends_with('.'),
            "fits `Forbidden: {{reason}}.`: {d}"
        );
        assert!(!d.brief().is_empty() && !d.brief().contains(' '));
    }
}

#[test]
fn a_blacklist_refusal_names_the_entry_that_matched() {
    let mut p = Baseline::with_rules(
        parse(
            "# ads\nads.example\n\n*.tracker.example\n10.0.0.0/8\n10.9.0.0/16\n0.0.0.0 a.example b.example\n",
            "conf/blocked.txt",
        )
        .unwrap(),
    );
    p.allow_local_targets = true;
    let reason = |r: Result<(), Denial>| r.unwrap_err().to_string();
    assert_eq!(
        reason(p.check_host("ADS.example.")),
        "this destination is blocked by conf/blocked.txt:2 (ads.example)"
    );
    assert_eq!(
        reason(p.check_host("a.b.tracker.example")),
        "this destination is blocked by conf/blocked.txt:4 (*.tracker.example)"
    );
    assert_eq!(
        reason(p.check_host("10.1.2.3")),
        "this destination is blocked by conf/blocked.txt:5 (10.0.0.0/8)"
    );
    assert_eq!(
        reason(p.check_addrs(&[sock("10.9.1.1")])),
        "this destination is blocked by conf/blocked.txt:6 (10.9.0.0/16)"
    );
    assert_eq!(
        reason(p.check_addr("64:ff9b::a09:101".parse().unwrap())),
        "this destination is blocked by conf/blocked.txt:6 (10.9.0.0/16)",
        "a NAT64 address names the IPv4 entry it embeds"
    );
    assert_eq!(
        reason(p.check_host("b.example")),
        "this destination is blocked by conf/blocked.txt:7 (b.example)"
    );
    let refusal = Refusal::from(p.check_host("ads.example").unwrap_err());
    assert_eq!(refusal.rule.as_deref(), Some(BLACKLIST_RULE));
    assert!(refusal.reason.ends_with("conf/blocked.txt:2 (ads.example)"));
}

#[test]
fn entries_from_several_files_keep_their_own_lines() {
    let mut builder = crate::acl::DestListBuilder::default();
    builder.add_line("inline.example").unwrap();
    assert!(
        builder
            .add_text("one.example\n\nshared.example\n", "a.txt")
            .is_empty()
    );
    assert!(
        builder
            .add_text("# b\ntwo.example\nshared.example\n192.0.2.0/24\n", "b.txt")
            .is_empty()
    );
    let rules = builder.build();
    let at = |name: &str| rules.listed_name(name).map(|l| l.to_string());
    assert_eq!(at("inline.example"), None, "an entry from no file");
    assert!(rules.blocks_name("inline.example"));
    assert_eq!(at("one.example").as_deref(), Some("a.txt:1 (one.example)"));
    assert_eq!(
        at("shared.example").as_deref(),
        Some("a.txt:3 (shared.example)"),
        "the first listing"
    );
    assert_eq!(at("two.example").as_deref(), Some("b.txt:2 (two.example)"));
    assert_eq!(
        rules
            .listed_addr("192.0.2.9".parse().unwrap())
            .map(|l| l.to_string())
            .as_deref(),
        Some("b.txt:4 (192.0.2.0/24)")
    );
    assert_eq!(at("other.example"), None);
}
