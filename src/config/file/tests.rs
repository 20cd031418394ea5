//! The configuration file reader: flag keys as command-line text, the policy sections
//! into rules, and every problem at its line.

use std::path::Path;

use super::*;
use crate::acl::{Evaluation, Facts, Verdict, normalise};
use crate::upstream::Hop;

fn flags() -> Vec<FlagKey> {
    let key = |key: &str, takes_value, is_path| FlagKey {
        key: key.into(),
        takes_value,
        is_path,
    };
    vec![
        key("port", true, false),
        key("cache", false, false),
        key("auth_file", true, true),
        key("allow_clients", true, false),
    ]
}

fn read_ok(text: &str) -> FileSettings {
    let (settings, errors) = parse(text, "p.toml", Path::new("/etc/proxy"), &flags());
    assert!(errors.is_empty(), "{}", FileErrors(errors));
    settings
}

fn problems(text: &str) -> Vec<String> {
    let (_, errors) = parse(text, "p.toml", Path::new("/etc/proxy"), &flags());
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn flag_keys_become_command_line_text() {
    let settings = read_ok(
        "port = 3128\ncache = true\nauth_file = \"users.txt\"\nallow_clients = [\"10.0.0.0/8\", \"::1\"]\n",
    );
    let shown: Vec<(&str, Option<&str>, usize)> = settings
        .flags
        .iter()
        .map(|f| (f.key.as_str(), f.value.as_deref(), f.line))
        .collect();
    assert!(shown.contains(&("port", Some("3128"), 1)));
    assert!(shown.contains(&("cache", Some(""), 2)));
    assert!(
        shown.contains(&("auth_file", Some("/etc/proxy/users.txt"), 3)),
        "relative to the file"
    );
    assert!(shown.contains(&("allow_clients", Some("10.0.0.0/8,::1"), 4)));
    let off = read_ok("cache = false\n");
    assert_eq!(
        off.flags[0].value, None,
        "a switch set to false is left out"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_all_reported_with_their_lines() {
    let found = problems(
        "prot = 1\ncache = \"yes\"\ndefault = \"maybe\"\n[groups]\nstaff = [\"@ops\"]\n\
         [[rules]]\nnmae = \"x\"\naction = \"allow\"\n[[rules]]\naction = \"block\"\n\
         ports = [\"70000\"]\nmethods = [\"get\"]\nclients = [\"10.0.0.0/33\"]\n\
         [limits]\nconnections = 0\nburst = 3\n",
    );
    let expected = [
        "p.toml:1: unknown key `prot`",
        "p.toml:2: `cache` must be true or false",
        "p.toml:3: `default` must be \"allow\" or \"deny\"",
        "p.toml:5: \"@ops\": groups list users",
        "p.toml:7: unknown key `nmae` in a rule",
        "p.toml:10: `action` must be \"allow\" or \"deny\"",
        "p.toml:11: `ports`:",
        "p.toml:12: `methods`: \"get\" is not a method name in capitals",
        "p.toml:13: `clients`:",
        "p.toml:15: `connections` must be a whole number of at least 1",
        "p.toml:16: unknown key `burst` in [limits]",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn syntax_errors_have_a_line_too() {
    let found = problems("port = 8080\n[[rules]\naction = \"deny\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("p.toml:2: "), "{found:?}");
}

#[test]
fn a_missing_action_is_reported_at_the_rule() {
    let found = problems("\n[[rules]]\nname = \"x\"\n");
    assert_eq!(
        found,
        ["p.toml:2: rule 1 has no `action` (\"allow\" or \"deny\")"]
    );
}

#[test]
fn rules_keep_their_order_names_places_groups_and_limits() {
    let settings = read_ok(
        "default = \"deny\"\n[groups]\nstaff = [\"alice\", \"bob\"]\n[limits]\nbandwidth = \"10MiB\"\n\
         auth_failures_per_minute = 5\nauth_block_seconds = 60\nauth_failures_per_minute_total = 40\n\
         [[rules]]\nname = \"no ads\"\naction = \"deny\"\ndest = [\"*.ads.example\"]\n\
         [[rules]]\naction = \"allow\"\nusers = [\"@staff\", \"carol\"]\nhours = [\"Mon-Fri 08:00-18:00\"]\n\
         limits = { requests_per_second = 5, bandwidth = 1000 }\n",
    );
    assert_eq!(settings.limits.bandwidth, Some(10 << 20));
    assert_eq!(settings.limits.auth_failures_per_minute, Some(5));
    assert_eq!(settings.limits.auth_block.as_secs(), 60);
    assert_eq!(settings.limits.auth_failures_total(), Some(40));
    let rules = settings.rules.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(&*rules[0].label, "\"no ads\" (rule 1, p.toml:9)");
    assert_eq!(&*rules[1].label, "rule 2 (p.toml:13)");
    let users = rules[1].users.as_ref().unwrap();
    assert!(["alice", "bob", "carol"].iter().all(|u| users.contains(*u)));
    let limits = rules[1].limits.as_ref().unwrap();
    assert_eq!(
        (limits.requests_per_second, limits.bandwidth),
        (Some(5), Some(1000))
    );
    assert!(settings.rules.uses_hours() && settings.rules.names_users());
}

#[test]
fn authentication_limits_belong_to_everyone() {
    let found = problems("[[rules]]\naction = \"allow\"\nlimits = { auth_block_seconds = 5 }\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("p.toml:3: unknown key `auth_block_seconds` in a rule's limits"));
}

#[test]
fn dest_files_are_read_relative_to_the_file_with_their_own_lines() {
    let dir = std::env::temp_dir().join(format!("proxy-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("allowed.txt"),
        "# allowed\ngithub.com\n*.github.com\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.txt"), "ok.example\nbad..name\n").unwrap();
    let text =
        "default = \"deny\"\n[[rules]]\naction = \"allow\"\ndest_files = [\"allowed.txt\"]\n";
    let (settings, errors) = parse(text, "p.toml", &dir, &flags());
    assert!(errors.is_empty(), "{errors:?}");
    let book = Arc::new(settings.rules);
    let allowed = |name: &str| {
        let host = normalise(name);
        let facts = Facts {
            user: None,
            client: "127.0.0.1".parse().unwrap(),
            host: &host,
            port: 443,
            method: "CONNECT",
            path: None,
            now: None,
        };
        matches!(
            book.evaluate(&facts),
            Evaluation::Decided(Verdict::Allow { .. })
        )
    };
    assert!(allowed("api.github.com") && allowed("github.com") && !allowed("gitlab.com"));
    let (_, errors) = parse(
        "[[rules]]\naction = \"deny\"\ndest_files = [\"broken.txt\", \"missing.txt\"]\n",
        "p.toml",
        &dir,
        &flags(),
    );
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|e| e.ends_with(
            "broken.txt:2: empty label (two dots in a row or a leading dot) in \"bad..name\""
        )),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|e| e.starts_with("p.toml:3: cannot read")),
        "{shown:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listen_tables_become_listeners_with_paths_relative_to_the_file() {
    let settings = read_ok(
        "[[listen]]\naddr = \"0.0.0.0:3129\"\ntls_cert = \"certs/proxy.pem\"\n\
         tls_key = \"/keys/proxy.key\"\n\n[[listen]]\naddr = \"127.0.0.1:1080\"\n\
         protocol = \"socks5\"\nproxy_protocol_from = [\"10.0.0.0/8\", \"::1\"]\n",
    );
    let [tls, socks] = &settings.listeners[..] else {
        panic!("{:?}", settings.listeners);
    };
    assert_eq!(tls.line, 1);
    assert_eq!(tls.listener.addr, "0.0.0.0:3129".parse().unwrap());
    let files = tls.listener.tls.as_ref().unwrap();
    assert_eq!(files.cert, Path::new("/etc/proxy/certs/proxy.pem"));
    assert_eq!(files.key, Path::new("/keys/proxy.key"));
    assert_eq!(socks.line, 6);
    assert_eq!(socks.listener.protocol, crate::config::Protocol::Socks5);
    assert!(socks.listener.tls.is_none());
    assert!(
        socks
            .listener
            .expects_proxy_header("10.2.3.4".parse().unwrap())
    );
    assert!(socks.listener.expects_proxy_header("::1".parse().unwrap()));
}

#[test]
fn bad_listen_tables_are_reported_at_their_lines() {
    let found = problems(
        "[[listen]]\naddr = \"localhost:80\"\n\
         [[listen]]\naddr = \"127.0.0.1:1\"\nprotocol = \"socks4\"\nport = 3\n\
         [[listen]]\nprotocol = \"http\"\n\
         [[listen]]\naddr = \"127.0.0.1:2\"\ntls_cert = \"c.pem\"\n\
         [[listen]]\naddr = \"127.0.0.1:3\"\nprotocol = \"socks5\"\ntls_cert = \"c\"\ntls_key = \"k\"\n\
         [[listen]]\naddr = \"127.0.0.1:4\"\nproxy_protocol_from = [\"10.0.0.0/40\"]\n\
         [[listen]]\naddr = \"127.0.0.1:5\"\n[[listen]]\naddr = \"127.0.0.1:5\"\n",
    );
    let expected = [
        "p.toml:2: `addr`: \"localhost:80\" is not IP:PORT",
        "p.toml:5: `protocol` must be \"http\" or \"socks5\", not \"socks4\"",
        "p.toml:6: unknown key `port` in [[listen]]",
        "p.toml:7: [[listen]] needs `addr`",
        "p.toml:9: `tls_cert` and `tls_key` go together",
        "p.toml:12: 127.0.0.1:3: TLS is only for HTTP listeners",
        "p.toml:19: `proxy_protocol_from`:",
        "p.toml:22: 127.0.0.1:5: two listeners on one address (the other at line 20)",
    ];
    for want in expected {
        assert!(
            found.iter().any(|line| line.contains(want)),
            "{want:?} not in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let not_tables = problems("listen = \"127.0.0.1:1\"\n");
    assert!(not_tables[0].contains("array of tables"), "{not_tables:?}");
}

#[test]
fn parents_routes_and_headers_are_read_with_every_problem_at_its_line() {
    let text = "[[parents]]\nname = \"corp\"\nurl = \"http://u:secret@proxy.corp:3128\"\n\
                [[parents]]\nname = \"tor\"\nurl = \"socks5h://127.0.0.1:9050\"\n\
                [[routes]]\ndest = [\"*.corp\", \"10.0.0.0/8\"]\nvia = \"direct\"\n\
                [[routes]]\nvia = [\"corp\", \"tor\", \"direct\"]\n\
                [headers]\nrequest_add = [\"X-Team: a\"]\nresponse_remove = [\"Server\"]\n";
    let settings = read_ok(text);
    let egress = &settings.egress;
    assert_eq!(egress.parents.len(), 2);
    assert_eq!(
        egress.routes[1].hops,
        [Hop::Parent(0), Hop::Parent(1), Hop::Direct]
    );
    assert!(egress.routes[1].dest.is_none());
    assert_eq!(egress.request_add.len(), 1);
    let shown = format!("{:?}", read_ok(text).egress);
    assert_eq!(
        shown,
        format!("{egress:?}"),
        "stable, for the restart check"
    );
    assert!(!shown.contains("secret"), "{shown}");

    let bad = problems(
        "[[parents]]\nname = \"p\"\nurl = \"ftp://x:1\"\n\
         [[parents]]\nname = \"direct\"\nurl = \"http://x:1\"\n\
         [[routes]]\ndest = [\"a b c\"]\nvia = [\"nobody\"]\n\
         [headers]\nrequest_add = [\"Host: x\"]\nrequest_remove = [\"bad name\"]\n",
    );
    let mut lines: Vec<&str> = bad.iter().map(|p| p.split(": ").next().unwrap()).collect();
    lines.sort_by_key(|place| place[7..].parse::<usize>().unwrap());
    assert_eq!(
        lines,
        [
            "p.toml:3",
            "p.toml:5",
            "p.toml:8",
            "p.toml:9",
            "p.toml:11",
            "p.toml:12"
        ],
        "{bad:#?}"
    );
}
