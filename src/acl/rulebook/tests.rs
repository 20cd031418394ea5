//! The rule engine: each condition alone and combined, first match, allow-list mode,
//! 407 versus 403, time windows on a set clock, and addresses settled after DNS.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::SocketAddr;

use super::*;
use crate::acl::{DestList, DestListBuilder, NetSet, parse_client_net};

fn dest(entries: &[&str]) -> DestList {
    let mut builder = DestListBuilder::default();
    for entry in entries {
        builder.add_line(entry).unwrap();
    }
    builder.build()
}

/// `rules` followed by rules that never match these tests' requests (port 25), enough
/// of them that the rule book is too long for the shared name index (see `names.rs`)
/// and each rule is asked itself.
fn past_the_index(mut rules: Vec<Rule>) -> Vec<Rule> {
    while rules.len() <= 64 {
        rules.push(mail(rules.len() + 1));
    }
    rules
}

/// A rule these tests' requests (port 443) never meet: deny port 25.
fn mail(number: usize) -> Rule {
    let mut mail = rule(number, Action::Deny);
    mail.ports = Some("25".parse().unwrap());
    mail
}

fn rule(number: usize, action: Action) -> Rule {
    Rule {
        label: Rule::make_label(None, number, "p.toml", number),
        number,
        file: "p.toml".into(),
        line: number,
        action,
        ..Rule::default()
    }
}

fn users(names: &[&str]) -> Option<HashSet<Box<str>>> {
    Some(names.iter().map(|n| Box::from(*n)).collect())
}

fn book(rules: Vec<Rule>, default: Action) -> Arc<RuleBook> {
    Arc::new(RuleBook::new(
        rules,
        default,
        Some("default (p.toml:1)".into()),
    ))
}

struct Ask<'a> {
    user: Option<&'a str>,
    client: &'a str,
    host: &'a str,
    port: u16,
    method: &'a str,
    now: Option<WeekTime>,
}

const ASK: Ask<'static> = Ask {
    user: None,
    client: "10.0.0.1",
    host: "example.com",
    port: 443,
    method: "GET",
    now: None,
};

/// [`ASK`] for another host.
fn to(host: &'static str) -> Ask<'static> {
    Ask { host, ..ASK }
}

/// `allow N`, `deny N`, `auth N`, `allow default`…, or `pending` when DNS is needed.
fn decide(book: &Arc<RuleBook>, ask: Ask<'_>) -> String {
    let host = crate::acl::normalise(ask.host);
    let facts = Facts {
        user: ask.user,
        client: ask.client.parse().unwrap(),
        host: &host,
        port: ask.port,
        method: ask.method,
        now: ask.now,
    };
    match book.evaluate(&facts) {
        Evaluation::Decided(verdict) => show(&verdict),
        Evaluation::Pending(_) => "pending".into(),
    }
}

fn show(verdict: &Verdict) -> String {
    let (what, rule) = match verdict {
        Verdict::Allow { rule, .. } => ("allow", rule),
        Verdict::Deny { rule } => ("deny", rule),
        Verdict::AuthRequired { rule } => ("auth", rule),
    };
    let rule = rule.as_deref().unwrap_or("-");
    let number = rule
        .strip_prefix("rule ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("default");
    format!("{what} {number}")
}

/// A one-rule book (deny, with `condition` set) and a request it must match and one it
/// must not, each differing from [`ASK`] in one field.
type ConditionCase = (fn(&mut Rule), Ask<'static>, Ask<'static>);

#[test]
fn each_condition_alone() {
    let monday = WeekTime::parse("Mon", "09:00");
    let sunday = WeekTime::parse("Sun", "09:00");
    let cases: [ConditionCase; 6] = [
        (
            |r| r.users = users(&["alice"]),
            Ask {
                user: Some("alice"),
                ..ASK
            },
            Ask {
                user: Some("bob"),
                ..ASK
            },
        ),
        (
            |r| r.clients = Some(NetSet::build(&[parse_client_net("10.0.0.0/8").unwrap()])),
            ASK,
            Ask {
                client: "192.0.2.1",
                ..ASK
            },
        ),
        (
            |r| r.dest = Some(dest(&["*.example.com"])),
            Ask {
                host: "a.example.com",
                ..ASK
            },
            ASK,
        ),
        (
            |r| r.ports = Some("80,8000-9000".parse().unwrap()),
            Ask { port: 8080, ..ASK },
            ASK,
        ),
        (
            |r| r.methods = Some(vec!["POST".into()]),
            Ask {
                method: "POST",
                ..ASK
            },
            Ask {
                method: "post",
                ..ASK
            },
        ),
        (
            |r| r.hours = Some(vec!["Mon-Fri 08:00-18:00".parse().unwrap()]),
            Ask { now: monday, ..ASK },
            Ask { now: sunday, ..ASK },
        ),
    ];
    for (index, (condition, matching, other)) in cases.into_iter().enumerate() {
        let mut only = rule(1, Action::Deny);
        condition(&mut only);
        let b = book(vec![only], Action::Allow);
        assert_eq!(decide(&b, matching), "deny 1", "case {index}");
        assert_eq!(decide(&b, other), "allow default", "case {index}");
    }
}

#[test]
fn conditions_combine_and_the_first_match_wins() {
    let mut staff = rule(1, Action::Allow);
    staff.users = users(&["alice"]);
    staff.dest = Some(dest(&["github.com"]));
    staff.methods = Some(vec!["GET".into(), "CONNECT".into()]);
    let mut shadowed = rule(2, Action::Deny);
    shadowed.dest = Some(dest(&["github.com"]));
    let b = book(vec![staff, shadowed, rule(3, Action::Deny)], Action::Allow);
    let alice = Some("alice");
    assert_eq!(
        decide(
            &b,
            Ask {
                user: alice,
                host: "github.com",
                ..ASK
            }
        ),
        "allow 1"
    );
    assert_eq!(
        decide(
            &b,
            Ask {
                user: alice,
                host: "github.com",
                method: "POST",
                ..ASK
            }
        ),
        "deny 2",
        "one condition off: the next rule decides"
    );
    assert_eq!(decide(&b, Ask { user: alice, ..ASK }), "deny 3");
}

#[test]
fn allow_list_mode_denies_what_no_rule_allows() {
    let mut only = rule(1, Action::Allow);
    only.dest = Some(dest(&["example.com"]));
    let b = book(vec![only], Action::Deny);
    assert_eq!(decide(&b, ASK), "allow 1");
    assert_eq!(decide(&b, to("example.org")), "deny default");
}

#[test]
fn anonymous_requests_a_user_rule_could_allow_get_407() {
    let mut staff = rule(1, Action::Allow);
    staff.users = users(&["alice"]);
    staff.dest = Some(dest(&["github.com"]));
    let mut public = rule(2, Action::Allow);
    public.dest = Some(dest(&["public.example"]));
    let b = book(vec![staff, public], Action::Deny);
    assert_eq!(decide(&b, to("github.com")), "auth default");
    assert_eq!(decide(&b, to("public.example")), "allow 2");
    assert_eq!(decide(&b, to("other.example")), "deny default");
    // A logged-in user no rule allows is refused, not asked again.
    let bob = Some("bob");
    assert_eq!(
        decide(
            &b,
            Ask {
                user: bob,
                host: "github.com",
                ..ASK
            }
        ),
        "deny default"
    );
}

/// The check an anonymous GET to `lab.example` leaves for the dialer.
fn pending_for_lab(b: &Arc<RuleBook>) -> AddressCheck {
    let host = Host::Name(Cow::Borrowed("lab.example"));
    let facts = Facts {
        user: None,
        client: "10.0.0.1".parse().unwrap(),
        host: &host,
        port: 443,
        method: "GET",
        now: None,
    };
    match b.evaluate(&facts) {
        Evaluation::Pending(check) => check,
        Evaluation::Decided(verdict) => panic!("a network rule must wait for DNS: {verdict:?}"),
    }
}

/// `check` settled with `addrs` (port 443), shown as [`show`] does.
fn settle(check: &AddressCheck, addrs: &[&str]) -> String {
    let addrs: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::new(a.parse().unwrap(), 443))
        .collect();
    show(&check.settle(&addrs))
}

#[test]
fn networks_wait_for_the_addresses_and_settle_rebinding_safely() {
    let mut internal = rule(1, Action::Deny);
    internal.dest = Some(dest(&["10.0.0.0/8"]));
    let mut lab = rule(2, Action::Allow);
    lab.dest = Some(dest(&["192.0.2.0/24"]));
    let b = book(vec![internal, lab], Action::Deny);
    assert_eq!(decide(&b, to("10.1.2.3")), "deny 1");
    assert_eq!(decide(&b, to("192.0.2.9")), "allow 2");
    let check = pending_for_lab(&b);
    let settle = |addrs: &[&str]| settle(&check, addrs);
    assert_eq!(settle(&["192.0.2.1"]), "allow 2");
    assert_eq!(
        settle(&["192.0.2.1", "10.9.9.9"]),
        "deny 1",
        "any address in a deny network"
    );
    assert_eq!(
        settle(&["192.0.2.1", "198.51.100.1"]),
        "deny default",
        "all in an allow network"
    );
    assert_eq!(
        settle(&["::ffff:10.0.0.1"]),
        "deny 1",
        "mapped addresses count as IPv4"
    );
}

/// The names a settling walk needs are looked up before DNS, for rules past the 64th
/// too, in rule books short enough for the shared name index and in longer ones.
#[test]
fn a_settled_check_still_meets_the_names_of_later_rules() {
    for fillers in [3, 70] {
        let mut rules = Vec::new();
        let mut internal = rule(1, Action::Deny);
        internal.dest = Some(dest(&["10.0.0.0/8"]));
        rules.push(internal);
        for _ in 0..fillers {
            rules.push(mail(rules.len() + 1));
        }
        let mut lab = rule(rules.len() + 1, Action::Allow);
        lab.dest = Some(dest(&["lab.example", "host1.example"]));
        let lab_number = lab.number;
        rules.push(lab);
        let b = book(rules, Action::Deny);
        let check = pending_for_lab(&b);
        let settle = |addr| settle(&check, &[addr]);
        assert_eq!(
            settle("192.0.2.1"),
            format!("allow {lab_number}"),
            "{fillers} fillers"
        );
        assert_eq!(settle("10.1.1.1"), "deny 1", "{fillers} fillers");
    }
}

/// Settling tests the waiting rules in order, and a login is still asked for by the
/// rules after an allow rule that names users.
#[test]
fn settling_keeps_the_order_and_the_login_question() {
    let mut internal = rule(1, Action::Deny);
    internal.dest = Some(dest(&["10.0.0.0/8"]));
    let mut staff = rule(2, Action::Allow);
    staff.users = users(&["alice"]);
    let mut lab = rule(3, Action::Deny);
    lab.dest = Some(dest(&["10.1.0.0/16", "192.0.2.0/24"]));
    let b = book(vec![internal, staff, lab], Action::Deny);
    let check = pending_for_lab(&b);
    let settle = |addr| settle(&check, &[addr]);
    assert_eq!(
        settle("10.1.1.1"),
        "deny 1",
        "the first waiting rule that matches"
    );
    assert_eq!(settle("192.0.2.1"), "auth 3", "past the users rule: log in");
    assert_eq!(settle("198.51.100.1"), "auth default");
}

#[test]
fn traces_name_the_failing_condition_of_each_earlier_rule() {
    let mut staff = rule(1, Action::Allow);
    staff.users = users(&["alice"]);
    let mut ads = rule(2, Action::Deny);
    ads.dest = Some(dest(&["ads.example"]));
    let b = book(vec![staff, ads, rule(3, Action::Allow)], Action::Deny);
    let host = Host::Name(Cow::Borrowed("example.com"));
    let facts = Facts {
        user: Some("bob"),
        client: "10.0.0.1".parse().unwrap(),
        host: &host,
        port: 443,
        method: "GET",
        now: None,
    };
    let (verdict, steps) = b.trace(&facts, &[]);
    assert_eq!(show(&verdict), "allow 3");
    let seen: Vec<(usize, Condition)> =
        steps.iter().map(|s| (s.rule.number, s.condition)).collect();
    assert_eq!(seen, [(1, Condition::Users), (2, Condition::Dest)]);
}

#[test]
fn denials_name_the_rule_in_the_body() {
    let refusal = refusal(Some("\"no ads\" (rule 1, p.toml:4)".into()));
    assert_eq!(refusal.brief, "policy-deny");
    assert!(refusal.reason.contains("\"no ads\" (rule 1, p.toml:4)"));
}

#[test]
fn names_are_found_with_the_shared_index_and_without_it() {
    for count in [3, 64, 70] {
        let mut rules: Vec<Rule> = (1..=count)
            .map(|number| {
                let mut r = rule(number, Action::Deny);
                r.dest = Some(dest(&[&format!("only{number}.example")]));
                r
            })
            .collect();
        let last = rules.last_mut().unwrap();
        last.dest = Some(dest(&["*.wild.example", "exact.example"]));
        let b = book(rules, Action::Allow);
        let last = format!("deny {count}");
        assert_eq!(decide(&b, to("exact.example")), last, "{count} rules");
        assert_eq!(decide(&b, to("a.b.wild.example")), last, "{count} rules");
        assert_eq!(decide(&b, to("only2.example")), "deny 2", "{count} rules");
        assert_eq!(
            decide(&b, to("wild.example")),
            "allow default",
            "{count} rules"
        );
    }
}

#[test]
fn a_name_listed_exactly_still_meets_other_rules_wildcards() {
    // The index answers a name listed exactly from that entry alone, so the entry must
    // hold the rules whose wildcards cover it too, before and after the exact one.
    // Without the index (a long rule book) each rule is asked: the answers are the same.
    for indexed in [true, false] {
        let mut wildcard_first = rule(1, Action::Deny);
        wildcard_first.users = users(&["carol"]);
        wildcard_first.dest = Some(dest(&["*.example.com"]));
        let mut only_alice = rule(2, Action::Allow);
        only_alice.users = users(&["alice"]);
        only_alice.dest = Some(dest(&["a.example.com"]));
        let mut wildcard = rule(3, Action::Deny);
        wildcard.dest = Some(dest(&["*.example.com", "other.test"]));
        let mut exact_later = rule(4, Action::Deny);
        exact_later.dest = Some(dest(&["b.example.com"]));
        let rules = vec![wildcard_first, only_alice, wildcard, exact_later];
        let rules = if indexed {
            rules
        } else {
            past_the_index(rules)
        };
        let book = book(rules, Action::Allow);
        let ask = |user, host| Ask { user, host, ..ASK };
        assert_eq!(
            decide(&book, ask(Some("alice"), "a.example.com")),
            "allow 2"
        );
        assert_eq!(decide(&book, ask(Some("carol"), "a.example.com")), "deny 1");
        assert_eq!(decide(&book, ask(Some("bob"), "A.Example.com.")), "deny 3");
        assert_eq!(decide(&book, to("b.example.com")), "deny 3");
        assert_eq!(decide(&book, to("example.com")), "allow default");
        assert_eq!(decide(&book, to("other.test")), "deny 3");
    }
}
