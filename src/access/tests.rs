//! Tests for loading the access files, atomic reload and the open-proxy warning.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;

use super::*;
use crate::acl::Denial;

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
fn defaults_are_safe() {
    let settings = AccessSettings::default();
    assert_eq!(settings.connect_ports.to_string(), "443");
    let access = AccessControl::load(&settings).unwrap();
    assert!(!access.auth_required() && access.authenticator().is_none());
    assert!(matches!(
        access.baseline().check_addr("127.0.0.1".parse().unwrap()),
        Err(Denial::LocalTarget(_))
    ));
}

#[tokio::test]
async fn loads_both_files() {
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "example.com\n");
    let users = dir.write("users.txt", "alice:secret\n");
    let args = AccessSettings {
        blacklist: Some(rules),
        auth_file: Some(users),
        ..AccessSettings::default()
    };
    let access = AccessControl::load(&args).unwrap();
    assert!(access.auth_required());
    assert!(matches!(
        access.baseline().check_host("Example.com."),
        Err(Denial::BlockedHost(Some(listed))) if listed.line == 1 && listed.entry.to_string() == "example.com"
    ));
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
    let args = AccessSettings {
        blacklist: Some(rules),
        auth_file: Some(users),
        ..AccessSettings::default()
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
    let args = AccessSettings {
        blacklist: Some(rules.clone()),
        auth_file: Some(users.clone()),
        ..AccessSettings::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let in_flight = access.baseline();

    std::fs::write(&rules, "b.com\n").unwrap();
    std::fs::write(&users, "alice:two\n").unwrap();
    access.reload().unwrap();
    let policy = access.baseline();
    assert_eq!(policy.check_host("a.com"), Ok(()));
    assert!(matches!(
        policy.check_host("b.com"),
        Err(Denial::BlockedHost(_))
    ));
    assert!(
        matches!(in_flight.check_host("a.com"), Err(Denial::BlockedHost(_))),
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
    assert!(matches!(
        access.baseline().check_host("b.com"),
        Err(Denial::BlockedHost(_))
    ));
    assert_eq!(access.baseline().check_host("c.com"), Ok(()));
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
    assert_eq!(access.baseline().check_host("c.com"), Ok(()));
}

#[tokio::test]
async fn sighup_reloads_the_files() {
    use tokio::signal::unix::{SignalKind, signal};
    // Our own listener makes sure a SIGHUP never hits the default action (exit),
    // whatever the order in which the reloader gets registered.
    let _guard = signal(SignalKind::hangup()).unwrap();
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "a.com\n");
    let args = AccessSettings {
        blacklist: Some(rules.clone()),
        ..AccessSettings::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let reread = args.clone();
    let reload = AccessReload::new(access.clone(), move || Ok(reread.clone()));
    let reloader = tokio::spawn(crate::files::reload_on_sighup(vec![Box::new(reload)]));
    std::fs::write(&rules, "b.com\n").unwrap();
    let pid = std::process::id().to_string();
    let mut reloaded = false;
    for _ in 0..50 {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if access.baseline().check_host("b.com").is_err() {
            reloaded = true;
            break;
        }
    }
    reloader.abort();
    assert!(reloaded, "SIGHUP did not reload within 5 s");
    assert_eq!(access.baseline().check_host("a.com"), Ok(()));
}

#[test]
fn open_proxy_warning() {
    let open = AccessSettings::default();
    assert!(warn_if_open_proxy("0.0.0.0".parse().unwrap(), &open));
    assert!(warn_if_open_proxy("::".parse().unwrap(), &open));
    assert!(warn_if_open_proxy("192.0.2.1".parse().unwrap(), &open));
    assert!(!warn_if_open_proxy("127.0.0.1".parse().unwrap(), &open));
    assert!(!warn_if_open_proxy("::1".parse().unwrap(), &open));
    let with_auth = AccessSettings {
        auth_file: Some(Path::new("users.txt").into()),
        ..AccessSettings::default()
    };
    assert!(!warn_if_open_proxy("0.0.0.0".parse().unwrap(), &with_auth));
    let with_clients = AccessSettings {
        allow_clients: Some(vec!["10.0.0.0/8".parse().unwrap()]),
        ..AccessSettings::default()
    };
    assert!(!warn_if_open_proxy(
        "0.0.0.0".parse().unwrap(),
        &with_clients
    ));
}

#[tokio::test]
async fn shipped_sample_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let args = AccessSettings {
        blacklist: Some(root.join("blocked_domains.txt")),
        auth_file: Some(root.join("users.txt")),
        ..AccessSettings::default()
    };
    let access = AccessControl::load(&args).unwrap();
    let policy = access.baseline();
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

#[test]
fn lists_a_reload_empties_are_named() {
    let dir = Scratch::new();
    let rules = dir.write("rules.txt", "example.com\n");
    let users = dir.write("users.txt", "alice:secret\n");
    let book = |dest: &str| {
        let rule = crate::acl::Rule {
            label: "\"mail\" (rule 1, policy.toml:3)".into(),
            dest: Some(crate::acl::parse(dest, "mail.txt").unwrap()),
            ..crate::acl::Rule::default()
        };
        Arc::new(RuleBook::new(vec![rule], crate::acl::Action::Allow, None))
    };
    let mut args = AccessSettings {
        blacklist: Some(rules.clone()),
        auth_file: Some(users.clone()),
        rules: Some(book("mail.example\n")),
        ..AccessSettings::default()
    };
    let full = read_files(&args).unwrap();
    assert!(emptied_lists(&full, &full, &args).is_empty());

    dir.write("rules.txt", "");
    dir.write("users.txt", "# nobody\n");
    args.rules = Some(book("# none\n"));
    let empty = read_files(&args).unwrap();
    assert_eq!(
        emptied_lists(&full, &empty, &args),
        [
            format!("the blacklist ({})", rules.display()),
            format!("the users file ({})", users.display()),
            "the destinations of \"mail\" (rule 1, policy.toml:3)".to_string(),
        ]
    );
    // Emptied once is said once: empty to empty is quiet.
    assert!(emptied_lists(&empty, &empty, &args).is_empty());
}
