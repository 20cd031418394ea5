//! The policy through the real binary: `explain` output and exit codes, `--check-config`,
//! flags overriding the file, the deciding rule in both access-log formats and in
//! `/metrics`.

use std::time::Duration;

use super::policy_files;
use crate::common::observe::{Running, get as get_metrics};
use crate::common::*;

const EXPLAIN_POLICY: &str = "default = \"deny\"\n\
    [[rules]]\nname = \"no ads\"\naction = \"deny\"\ndest = [\"*.ads.example\"]\n\
    [[rules]]\nname = \"loopback web\"\naction = \"allow\"\ndest = [\"127.0.0.0/8\", \"::1\"]\nmethods = [\"GET\"]\n";

async fn explain(args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_binary(&[&["explain"], args].concat()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stdout, stderr)
}

#[tokio::test]
async fn explain_prints_the_decision_the_rule_the_addresses_and_why_earlier_rules_missed() {
    let (_files, path) = policy_files("explain", EXPLAIN_POLICY);
    let config = text(&path);
    let (code, out, err) = explain(&["--config", config, "GET", "http://localhost:8080/x"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("decision: allow"), "{out}");
    assert!(
        out.contains(&format!("rule: \"loopback web\" (rule 2, {config}:8)")),
        "{out}"
    );
    assert!(
        out.contains("addresses: ") && out.contains("127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\"no ads\" (rule 1, {config}:4): dest did not match"
        )),
        "{out}"
    );

    let (code, out, _) = explain(&["--config", config, "POST", "http://127.0.0.1/"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("decision: deny") && out.contains("rule: default deny"),
        "{out}"
    );
    assert!(
        out.contains("\"loopback web\" (rule 2, ") && out.contains("methods did not match"),
        "{out}"
    );

    let (code, out, _) = explain(&["--config", config, "CONNECT", "x.ads.example:443"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rule: \"no ads\" (rule 1, "), "{out}");

    let (code, _, err) = explain(&["--config", config, "GET", "/not-absolute"]).await;
    assert_eq!(code, Some(2), "a bad URL is bad input: {err}");
    let (code, _, err) =
        explain(&["--config", config, "--client", "nope", "GET", "http://a/"]).await;
    assert_eq!(code, Some(2), "{err}");
    let broken = _files.write("broken.toml", "[[rules]]\naction = \"maybe\"\n");
    let (code, _, err) = explain(&["--config", text(&broken), "GET", "http://a/"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.toml:2: `action`"), "{err}");
}

#[tokio::test]
async fn check_config_exits_0_or_2_with_every_problem() {
    let (files, path) = policy_files("check", EXPLAIN_POLICY);
    let good = run_binary(&["--config", text(&path), "--check-config"]).await;
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = files.write(
        "bad.toml",
        "max_conections = 5\n[[rules]]\naction = \"allow\"\nports = [\"http\"]\nusers = [\"alice\"]\n",
    );
    let out = run_binary(&["--config", text(&bad), "--check-config"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(&format!("{}:1: unknown key `max_conections`", text(&bad))));
    assert!(lines[1].starts_with(&format!("{}:4: `ports`", text(&bad))));
    // Rules naming users need a users file: found after the file itself is clean.
    let users = files.write(
        "users-only.toml",
        "[[rules]]\naction = \"allow\"\nusers = [\"alice\"]\n",
    );
    let out = run_binary(&["--config", text(&users), "--check-config"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("users-only.toml:1: this rule names users, but no auth_file"),
        "{stderr}"
    );
    // A bad file also fails a real start, before listening.
    let start = run_binary(&["--config", text(&bad), "--port", "0"]).await;
    assert_eq!(start.status.code(), Some(2));
}

#[tokio::test]
async fn flags_override_the_file_and_the_rule_reaches_logs_and_metrics() {
    let origin = Origin::fixed("logged").await;
    let policy = format!(
        "host = \"192.0.2.1\"\nlog_format = \"json\"\n\
         [[rules]]\nname = \"no writes\"\naction = \"deny\"\nmethods = [\"POST\"]\n\
         [[rules]]\nname = \"reads\"\naction = \"allow\"\nports = [\"{}\"]\n",
        origin.addr.port()
    );
    let (_files, path) = policy_files("override", &policy);
    // The file's host cannot be bound here: the command line's must win for this to start.
    let mut running = Running::start(&[
        "--config",
        text(&path),
        "--host",
        "127.0.0.1",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .await;
    let get = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/r")
    );
    assert_eq!(status(&exchange(running.addr(), get.as_bytes()).await), 200);
    let post = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        origin.url("/w")
    );
    assert_eq!(
        status(&exchange(running.addr(), post.as_bytes()).await),
        403
    );
    let metrics = running.metrics.expect("metrics address");
    let mut body = String::new();
    for _ in 0..100 {
        body = String::from_utf8_lossy(&get_metrics(metrics, "/metrics").await.1).into_owned();
        if body.contains("action=\"deny\"") && body.contains("action=\"allow\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let place = |line: usize| format!("{}:{line}", text(&path));
    let deny = format!(
        "proxy_rule_decisions_total{{rule=\"\\\"no writes\\\" (rule 1, {})\",action=\"deny\"}} 1",
        place(5)
    );
    assert!(body.contains(&deny), "{deny}\nin\n{body}");
    assert!(body.contains("action=\"allow\"} 1"), "{body}");
    running.stop().await;
    let log = std::fs::read_to_string(running.log_file("access.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0]["rule"]
            .as_str()
            .unwrap()
            .starts_with("\"reads\" (rule 2, "),
        "{log}"
    );
    assert!(
        lines[1]["rule"]
            .as_str()
            .unwrap()
            .starts_with("\"no writes\" (rule 1, "),
        "{log}"
    );

    // The command line's format wins over the file's json: the rule is the 13th field.
    let mut squid = Running::start(&[
        "--config",
        text(&path),
        "--host",
        "127.0.0.1",
        "--log-format",
        "squid",
    ])
    .await;
    assert_eq!(status(&exchange(squid.addr(), post.as_bytes()).await), 403);
    squid.stop().await;
    let log = std::fs::read_to_string(squid.log_file("access.log")).unwrap();
    let fields: Vec<&str> = log.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(fields.len(), 14, "{log}");
    assert!(
        fields[12].starts_with("\"no%20writes\"%20(rule%201,"),
        "{log}"
    );
}

/// A 407 decided after DNS (the rules left the request to the destination's addresses,
/// and those leave only a rule naming users) names its rule in the log and in
/// `/metrics`, as one decided at admission does.
#[tokio::test]
async fn a_login_asked_for_after_dns_names_its_rule() {
    let origin = Origin::fixed("never reached").await;
    let policy = "auth_file = \"users.txt\"\nlog_format = \"json\"\ndefault = \"deny\"\n\
         [[rules]]\nname = \"staff\"\naction = \"allow\"\nusers = [\"alice\"]\n\
         [[rules]]\nname = \"lab\"\naction = \"allow\"\ndest = [\"192.0.2.0/24\"]\n";
    let (_files, path) = policy_files("late-407", policy);
    let mut running =
        Running::start(&["--config", text(&path), "--metrics-addr", "127.0.0.1:0"]).await;
    let get = format!(
        "GET http://localhost:{}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.addr.port()
    );
    let answer = exchange(running.addr(), get.as_bytes()).await;
    assert_eq!(status(&answer), 407, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(origin.request_count(), 0);
    let metrics = running.metrics.expect("metrics address");
    let wanted = format!(
        "proxy_rule_decisions_total{{rule=\"default deny ({}:5)\",action=\"auth_required\"}} 1",
        text(&path)
    );
    let mut body = String::new();
    for _ in 0..100 {
        body = String::from_utf8_lossy(&get_metrics(metrics, "/metrics").await.1).into_owned();
        if body.contains(&wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.contains(&wanted), "{wanted}\n{body}");
    running.stop().await;
    let log = std::fs::read_to_string(running.log_file("access.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], 407, "{log}");
    assert_eq!(
        line["rule"],
        format!("default deny ({}:5)", text(&path)),
        "{log}"
    );
}
