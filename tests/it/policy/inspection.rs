//! Issue #23's groundwork through the real binary and the proxy in-process: `new-ca`
//! (the certificate as openssl reads it, the key's mode, no overwriting), `[inspection]`
//! and `inspect` in `--check-config`, and the `paths` condition (403 naming the rule, a
//! CONNECT untouched, `explain` showing it). A leaf signed by a `new-ca` CA is checked
//! with `openssl verify`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::{policy_files, proxy_from};
use crate::common::access::assert_forbidden;
use crate::common::*;

/// Runs `openssl` with `args`; its exit status and stdout and stderr together.
async fn openssl(args: &[&str]) -> (bool, String) {
    let out = within(tokio::process::Command::new("openssl").args(args).output())
        .await
        .expect("openssl runs (it is on the machine; see docs/inspection.md)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn new_ca(dir: &Path, extra: &[&str]) -> std::process::Output {
    let cert = dir.join("ca.pem");
    let key = dir.join("ca.key");
    let args = [
        &["new-ca", "--cert", text(&cert), "--key", text(&key)],
        extra,
    ]
    .concat();
    run_binary(&args).await
}

#[tokio::test]
async fn new_ca_writes_a_ca_openssl_accepts_and_signs_leaves_it_verifies() {
    let files = Scratch::new("new-ca");
    let out = new_ca(
        &files.path(""),
        &["--name", "Test Inspection CA", "--days", "10"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (files.path("").join("ca.pem"), files.path("").join("ca.key"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is private from its creation");

    let (ok, shown) = openssl(&["x509", "-noout", "-text", "-in", text(&cert)]).await;
    assert!(ok, "{shown}");
    assert!(shown.contains("CA:TRUE"), "{shown}");
    assert!(shown.contains("Certificate Sign, CRL Sign"), "{shown}");
    assert!(shown.contains("CN = Test Inspection CA"), "{shown}");
    assert!(shown.contains("prime256v1"), "ECDSA P-256: {shown}");

    // A leaf signed by this CA, through the library as the proxy will sign it.
    let ca = proxy_server::inspect::Authority::load(&cert, &key).expect("the CA loads");
    let stats = proxy_server::stats::Stats::default();
    let leaves = proxy_server::inspect::Leaves::new(std::sync::Arc::new(ca), 8);
    let leaf = leaves.certified_key("www.example.test", &stats).unwrap();
    let leaf_pem = files.write("leaf.pem", pem(&leaf.cert[0]));
    let (ok, shown) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        text(&cert),
        text(&leaf_pem),
    ])
    .await;
    assert!(ok && shown.contains(": OK"), "{shown}");
    let (ok, shown) = openssl(&["x509", "-noout", "-text", "-in", text(&leaf_pem)]).await;
    assert!(ok, "{shown}");
    assert!(
        shown.contains("CA:FALSE") && shown.contains("DNS:www.example.test"),
        "{shown}"
    );
    assert!(shown.contains("TLS Web Server Authentication"), "{shown}");
}

#[tokio::test]
async fn new_ca_refuses_to_overwrite_and_checks_its_arguments() {
    let files = Scratch::new("new-ca-refuses");
    files.write("ca.key", "an old key\n");
    let out = new_ca(&files.path(""), &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists; not overwriting"), "{err}");
    assert!(!files.path("").join("ca.pem").exists(), "nothing written");
    assert_eq!(
        std::fs::read_to_string(files.path("").join("ca.key")).unwrap(),
        "an old key\n"
    );

    let fresh = Scratch::new("new-ca-days");
    for bad in [&["--days", "0"][..], &["--days", "3651"], &["--name", ""]] {
        let out = new_ca(&fresh.path(""), bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            !fresh.path("").join("ca.key").exists(),
            "{bad:?}: nothing written"
        );
    }
}

/// `[inspection]` and `inspect` problems, each at its line, exit 2.
#[tokio::test]
async fn check_config_reports_inspection_problems_at_their_lines() {
    let files = Scratch::new("inspect-check");
    assert!(new_ca(&files.path(""), &[]).await.status.success());
    let other = Scratch::new("inspect-check-other");
    assert!(new_ca(&other.path(""), &[]).await.status.success());
    std::fs::copy(
        other.path("").join("ca.key"),
        files.path("").join("other.key"),
    )
    .unwrap();
    std::fs::set_permissions(
        files.path("").join("other.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let check = |config: &Path| {
        let config = text(config).to_string();
        async move {
            let out = run_binary(&["--check-config", "--config", &config]).await;
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };

    let good = files.write(
        "good.toml",
        "[inspection]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nupstream_ca_file = \"ca.pem\"\n\
         [[rules]]\nname = \"code\"\naction = \"allow\"\ndest = [\"github.com\"]\ninspect = true\n",
    );
    let (code, err) = check(&good).await;
    assert_eq!(code, Some(0), "{err}");

    let misplaced = files.write(
        "misplaced.toml",
        "[[rules]]\naction = \"allow\"\ninspect = true\n\
         [[rules]]\naction = \"deny\"\ninspect = true\n",
    );
    let (code, err) = check(&misplaced).await;
    assert_eq!(code, Some(2), "{err}");
    let name = text(&misplaced);
    assert!(
        err.contains(&format!("{name}:3: `inspect = true` needs an [inspection]")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:6: `inspect` belongs on allow rules")),
        "{err}"
    );

    let mismatched = files.write(
        "mismatched.toml",
        "[inspection]\nca_cert = \"ca.pem\"\nca_key = \"other.key\"\nupstream_ca_file = \"ca.pem\"\n",
    );
    let (code, err) = check(&mismatched).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:3: ", text(&mismatched))) && err.contains("does not belong"),
        "{err}"
    );

    std::fs::set_permissions(
        files.path("").join("ca.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let (code, err) = check(&good).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:3: ", text(&good))) && err.contains("mode 0640"),
        "{err}"
    );
    std::fs::set_permissions(
        files.path("").join("ca.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let not_ca = files.write(
        "not-ca.toml",
        "[inspection]\nca_cert = \"missing.pem\"\nca_key = \"ca.key\"\nupstream_ca_file = \"ca.pem\"\n",
    );
    let (code, err) = check(&not_ca).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:2: ", text(&not_ca))) && err.contains("missing.pem"),
        "{err}"
    );
}

const PATH_POLICY: &str =
    "[[rules]]\nname = \"no admin\"\naction = \"deny\"\npaths = [\"/admin/*\"]\n";

#[tokio::test]
async fn a_path_rule_refuses_admin_allows_public_and_leaves_connect_alone() {
    let origin = Origin::fixed("public").await;
    let (_files, path) = policy_files("paths", PATH_POLICY);
    let proxy = proxy_from(&path, |_| {}).await;
    let get = |target: String| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    for refused in ["/admin/x", "/%61dmin/x?y=1", "/public/../admin/x"] {
        let response = exchange(proxy.addr, &get(origin.url(refused))).await;
        assert_forbidden(&response, "\"no admin\" (rule 1, ", refused);
    }
    assert_eq!(
        origin.request_count(),
        0,
        "a refused request never reaches the origin"
    );
    let response = exchange(proxy.addr, &get(origin.url("/public"))).await;
    assert_eq!(
        status(&response),
        200,
        "{}",
        String::from_utf8_lossy(&response)
    );

    // open_tunnel asserts the proxy's exact `200 Connection Established`.
    let _tunnel = open_tunnel(proxy.addr, &origin.addr.to_string(), "").await;
}

#[tokio::test]
async fn explain_shows_the_path_and_the_paths_condition() {
    let (_files, path) = policy_files("paths-explain", PATH_POLICY);
    let config = text(&path);
    let run = |url: &'static str| {
        let config = config.to_string();
        async move {
            let out = run_binary(&["explain", "--config", &config, "GET", url]).await;
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (code, out) = run("http://127.0.0.1/admin/x?y=1").await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("path: /admin/x\n") && out.contains("rule: \"no admin\""),
        "{out}"
    );
    let (code, out) = run("http://127.0.0.1/public").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"no admin\" (rule 1, ") && out.contains("paths did not match"),
        "{out}"
    );
}

/// A DER certificate as PEM, for openssl.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
