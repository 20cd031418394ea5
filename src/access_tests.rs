//! Tests for the access flags, loading, atomic reload and the open-proxy warning.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;

use super::*;
use crate::acl::Denial;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    access: AccessArgs,
}

fn flags(argv: &[&str]) -> Result<AccessArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("proxy-server").chain(argv.iter().copied()))
        .map(|cli| cli.access)
}

/// A private scratch directory per test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("proxy-access-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn basic(user_password: &str) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD.encode(user_password);
    format!("Basic {token}").into_bytes()
}

#[test]
fn flag_defaults() {
    let args = flags(&[]).unwrap();
    assert_eq!(args.auth_file, None);
    assert_eq!(args.blacklist, None);
    assert!(!args.allow_local_targets);
    assert_eq!(args.connect_ports.to_string(), "443");
    assert_eq!(args.allow_clients, None);
    let access = AccessControl::load(&args).unwrap();
    assert!(!access.auth_required() && access.authenticator().is_none());
    assert!(matches!(
        access.policy().check_addr("127.0.0.1".parse().unwrap()),
        Err(Denial::LocalTarget(_))
    ));
}

#[test]
fn flag_values_and_errors() {
    let args = flags(&[
        "--allow-local-targets",
        "--connect-ports",
        "443,8443,1024-65535",
        "--allow-clients",
        "10.0.0.0/8,192.0.2.7,fd00::/8",
    ])
    .unwrap();
    assert!(args.allow_local_targets);
    assert!(args.connect_ports.contains(5000) && !args.connect_ports.contains(25));
    assert_eq!(args.allow_clients.as_ref().map(Vec::len), Some(3));
    let bad_ports = flags(&["--connect-ports", "443,smtp"])
        .unwrap_err()
        .to_string();
    assert!(bad_ports.contains("not a port number"), "{bad_ports}");
    let bad_clients = flags(&["--allow-clients", "10.0.0.0/8,nope"])
        .unwrap_err()
        .to_string();
    assert!(
        bad_clients.contains("neither an address nor a CIDR"),
        "{bad_clients}"
    );
}

#[tokio::test]
async fn loads_both_files() {
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "example.com\n");
    let users = dir.write("users.txt", "alice:secret\n");
    let args = flags(&[
        "--blacklist",
        rules.to_str().unwrap(),
        "--auth-file",
        users.to_str().unwrap(),
    ])
    .unwrap();
    let access = AccessControl::load(&args).unwrap();
    assert!(access.auth_required());
    assert_eq!(
        access.policy().check_host("Example.com."),
        Err(Denial::BlockedHost)
    );
    let auth = access.authenticator().unwrap();
    assert_eq!(
        auth.authenticate(Some(&basic("alice:secret"))).await,
        Ok("alice".into())
    );
}

#[test]
fn bad_lines_in_both_files_are_reported_together() {
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "ok.com\n10.0.0.0/99\n");
    let users = dir.write("users.txt", "alice\n");
    let args = AccessArgs {
        blacklist: Some(rules),
        auth_file: Some(users),
        ..AccessArgs::default()
    };
    let errors = AccessControl::load(&args).unwrap_err().to_string();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].ends_with("rules.txt:2: invalid CIDR network \"10.0.0.0/99\""),
        "{errors}"
    );
    assert!(
        lines[1].contains("users.txt:1: expected user:password"),
        "{errors}"
    );
}

#[tokio::test]
async fn reload_swaps_both_files_or_neither() {
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "a.com\n");
    let users = dir.write("users.txt", "alice:one\n");
    let args = AccessArgs {
        blacklist: Some(rules.clone()),
        auth_file: Some(users.clone()),
        ..AccessArgs::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let in_flight = access.policy();

    std::fs::write(&rules, "b.com\n").unwrap();
    std::fs::write(&users, "alice:two\n").unwrap();
    access.reload().unwrap();
    let policy = access.policy();
    assert_eq!(policy.check_host("a.com"), Ok(()));
    assert_eq!(policy.check_host("b.com"), Err(Denial::BlockedHost));
    assert_eq!(
        in_flight.check_host("a.com"),
        Err(Denial::BlockedHost),
        "held version unchanged"
    );
    let auth = access.authenticator().unwrap();
    assert!(auth.authenticate(Some(&basic("alice:two"))).await.is_ok());
    assert!(auth.authenticate(Some(&basic("alice:one"))).await.is_err());

    // A broken rules file: neither file is swapped, even though users.txt is fine.
    std::fs::write(&rules, "c.com\n*.\n").unwrap();
    std::fs::write(&users, "alice:three\n").unwrap();
    let errors = access.reload().unwrap_err().to_string();
    assert!(errors.contains("rules.txt:2:"), "{errors}");
    assert!(!access.reload_and_log());
    assert_eq!(
        access.policy().check_host("b.com"),
        Err(Denial::BlockedHost)
    );
    assert_eq!(access.policy().check_host("c.com"), Ok(()));
    let auth = access.authenticator().unwrap();
    assert!(auth.authenticate(Some(&basic("alice:two"))).await.is_ok());

    // A vanished users file is a failure too.
    std::fs::write(&rules, "c.com\n").unwrap();
    std::fs::remove_file(&users).unwrap();
    assert!(
        access
            .reload()
            .unwrap_err()
            .to_string()
            .contains("cannot read users file")
    );
    assert_eq!(access.policy().check_host("c.com"), Ok(()));
}

#[tokio::test]
async fn sighup_reloads_the_files() {
    use tokio::signal::unix::{SignalKind, signal};
    // Our own listener makes sure a SIGHUP never hits the default action (exit),
    // whatever the order in which the reloader gets registered.
    let _guard = signal(SignalKind::hangup()).unwrap();
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "a.com\n");
    let args = AccessArgs {
        blacklist: Some(rules.clone()),
        ..AccessArgs::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let reloader = tokio::spawn(reload_on_sighup(access.clone()));
    std::fs::write(&rules, "b.com\n").unwrap();
    let pid = std::process::id().to_string();
    let mut reloaded = false;
    for _ in 0..50 {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if access.policy().check_host("b.com").is_err() {
            reloaded = true;
            break;
        }
    }
    reloader.abort();
    assert!(reloaded, "SIGHUP did not reload within 5 s");
    assert_eq!(access.policy().check_host("a.com"), Ok(()));
}

#[test]
fn open_proxy_warning() {
    let open = AccessArgs::default();
    assert!(warn_if_open_proxy("0.0.0.0".parse().unwrap(), &open));
    assert!(warn_if_open_proxy("::".parse().unwrap(), &open));
    assert!(warn_if_open_proxy("192.0.2.1".parse().unwrap(), &open));
    assert!(!warn_if_open_proxy("127.0.0.1".parse().unwrap(), &open));
    assert!(!warn_if_open_proxy("::1".parse().unwrap(), &open));
    let with_auth = AccessArgs {
        auth_file: Some(Path::new("users.txt").into()),
        ..AccessArgs::default()
    };
    assert!(!warn_if_open_proxy("0.0.0.0".parse().unwrap(), &with_auth));
    let with_clients = AccessArgs {
        allow_clients: Some(vec!["10.0.0.0/8".parse().unwrap()]),
        ..AccessArgs::default()
    };
    assert!(!warn_if_open_proxy(
        "0.0.0.0".parse().unwrap(),
        &with_clients
    ));
}

#[tokio::test]
async fn shipped_sample_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let args = AccessArgs {
        blacklist: Some(root.join("blocked_domains.txt")),
        auth_file: Some(root.join("users.txt")),
        ..AccessArgs::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let policy = access.policy();
    for blocked in [
        "tracker.example.com",
        "x.y.ads.example",
        "ads.example",
        "telemetry.example.net",
        "pixel.example.org",
        "198.51.100.9",
        "[fd00::1]:443",
        "203.0.113.7",
    ] {
        assert!(policy.check_host(blocked).is_err(), "{blocked}");
    }
    assert_eq!(policy.check_host("notads.example"), Ok(()));
    let auth = access.authenticator().unwrap();
    assert_eq!(auth.user_count(), 1);
    assert!(
        auth.authenticate(Some(&basic("demo:demo-password")))
            .await
            .is_ok()
    );
}
