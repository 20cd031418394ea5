//! The Debian package end to end: `./run.sh package --dev` builds it from the debug binary
//! these tests already use (a release build would take minutes), `dpkg-deb` shows what it
//! holds, `dpkg -i` installs it on this machine — the proxy-server user and the log
//! directory made, nothing started, nothing enabled —, the installed binary accepts the
//! packaged configuration, and `dpkg -r` then `dpkg --purge` take everything away again.
//!
//! It changes the machine (a package, a system user), so it needs root, as CI has on its
//! throwaway machine; it fails, rather than skips, without root or cargo-deb
//! (`./run.sh test` installs cargo-deb, dpkg-dev and adduser). It refuses to run over a
//! proxy-server package that was already installed.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::common::temp_dir;

/// Building the package: stripping the 140 MB debug binary and compressing it takes
/// about 20 s here; a busy 2-core machine may take several times that.
const BUILD_DEADLINE: Duration = Duration::from_secs(180);
/// One dpkg or dpkg-deb command, maintainer scripts included.
const DPKG_DEADLINE: Duration = Duration::from_secs(60);

const BINARY: &str = "/usr/bin/proxy-server";
const UNIT: &str = "/usr/lib/systemd/system/proxy-server.service";
const CONFIG: &str = "/etc/proxy-server/proxy-server.toml";
const LOGS: &str = "/var/log/proxy-server";
const ENABLED: &str = "/etc/systemd/system/multi-user.target.wants/proxy-server.service";

/// Runs `program` with `args` within `deadline`; its output, whatever its exit status.
async fn run(program: &str, args: &[&str], deadline: Duration) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(deadline, child)
        .await
        .unwrap_or_else(|_| panic!("`{program} {}` took over {deadline:?}", args.join(" ")))
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Like [`run`], but the command must succeed; its stdout.
async fn succeed(program: &str, args: &[&str], deadline: Duration) -> String {
    let output = run(program, args, deadline).await;
    assert!(
        output.status.success(),
        "`{program} {}` failed ({:?}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether the `proxy-server` package is installed (or half installed).
async fn installed() -> bool {
    let output = run(
        "dpkg-query",
        &["-W", "-f=${Status}", "proxy-server"],
        DPKG_DEADLINE,
    )
    .await;
    output.status.success() && !String::from_utf8_lossy(&output.stdout).contains("not-installed")
}

/// Whether a system account or group named `proxy-server` exists.
async fn account_exists(database: &str) -> bool {
    run("getent", &[database, "proxy-server"], DPKG_DEADLINE)
        .await
        .status
        .success()
}

/// Processes running the installed binary (a postinst that started the service).
fn running_installed_binary() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe == Path::new(BINARY)).then_some(pid)
        })
        .collect()
}

/// Purges the package when dropped, so a failed assertion leaves no installation behind.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["--purge", "proxy-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Checks what the machine offers before changing it; fails with the reason.
async fn assert_machine_ready() {
    let uid = succeed("id", &["-u"], DPKG_DEADLINE).await;
    assert_eq!(
        uid.trim(),
        "0",
        "the package test installs a package and must run as root (CI does, on a \
         throwaway machine)"
    );
    let cargo_deb = run("cargo", &["deb", "--version"], DPKG_DEADLINE).await;
    assert!(
        cargo_deb.status.success(),
        "cargo-deb is missing: ./run.sh test installs it (cargo install cargo-deb --locked)"
    );
    assert!(
        !installed().await,
        "a proxy-server package is already installed here; this test installs and purges \
         its own, so remove that one first (dpkg --purge proxy-server)"
    );
}

/// `./run.sh package --dev` into a fresh folder; the path of the one `.deb` it made.
async fn build_package() -> PathBuf {
    let out = temp_dir("deb");
    let out_arg = out.display().to_string();
    succeed(
        "./run.sh",
        &["package", "--dev", "-o", &out_arg],
        BUILD_DEADLINE,
    )
    .await;
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("the output folder")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package in {out:?}: {debs:?}");
    debs[0].clone()
}

/// What `dpkg-deb` says the package holds: the files, the control fields, the scripts.
async fn assert_contents(deb: &str) {
    let listing = succeed("dpkg-deb", &["-c", deb], DPKG_DEADLINE).await;
    let line_for = |path: &str| {
        listing
            .lines()
            .find(|line| line.ends_with(&format!(".{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
            .to_string()
    };
    assert!(line_for(BINARY).starts_with("-rwxr-xr-x 0/0 "), "{listing}");
    assert!(line_for(UNIT).starts_with("-rw-r--r-- 0/0 "), "{listing}");
    assert!(line_for(CONFIG).starts_with("-rw-r--r-- 0/0 "), "{listing}");
    line_for("/usr/share/doc/proxy-server/deployment.md");
    let info = succeed("dpkg-deb", &["-I", deb], DPKG_DEADLINE).await;
    for field in ["Package: proxy-server", "Section: net", "Depends: adduser"] {
        assert!(info.contains(field), "no `{field}`:\n{info}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "no {script}:\n{info}");
    }
    let conffiles = succeed("dpkg-deb", &["-I", deb, "conffiles"], DPKG_DEADLINE).await;
    assert_eq!(conffiles.trim(), CONFIG);
    let postinst = succeed("dpkg-deb", &["-I", deb, "postinst"], DPKG_DEADLINE).await;
    // Only `try-restart`, which leaves a stopped service stopped, may touch the service.
    let code: Vec<&str> = postinst
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    for forbidden in [
        "start proxy",
        "enable",
        "restart proxy",
        "--now",
        "reload-or",
    ] {
        assert!(
            !code
                .iter()
                .any(|line| line.contains(forbidden) && !line.contains("try-restart")),
            "postinst must not start or enable the service (`{forbidden}`):\n{postinst}"
        );
    }
}

/// What `dpkg -i` left: the files, the user, the log folder; nothing running or enabled.
async fn assert_installed() {
    let binary = std::fs::metadata(BINARY).expect("the binary is installed");
    assert_eq!(binary.permissions().mode() & 0o777, 0o755);
    let unit = std::fs::read_to_string(UNIT).expect("the unit is installed");
    assert!(
        unit.contains(&format!("ExecStart={BINARY} --config {CONFIG}")),
        "{unit}"
    );
    let config = std::fs::read_to_string(CONFIG).expect("the configuration is installed");
    assert!(config.contains("\nhost = \"127.0.0.1\"\n"), "{config}");
    let passwd = succeed("getent", &["passwd", "proxy-server"], DPKG_DEADLINE).await;
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.get(6), Some(&"/usr/sbin/nologin"), "{passwd}");
    let uid: u32 = fields.get(2).and_then(|u| u.parse().ok()).expect("a uid");
    assert!(uid < 1000, "a system user: {passwd}");
    let logs = std::fs::metadata(LOGS).expect("the log folder");
    assert!(logs.is_dir());
    assert_eq!((logs.uid(), logs.mode() & 0o777), (uid, 0o750));
    assert!(
        std::fs::symlink_metadata(ENABLED).is_err(),
        "installing must not enable the service"
    );
    assert_eq!(
        running_installed_binary(),
        Vec::<u32>::new(),
        "nothing started"
    );
}

#[tokio::test]
async fn the_debian_package_installs_checks_its_configuration_and_purges() {
    assert_machine_ready().await;
    let deb = build_package().await;
    let deb = deb.to_str().expect("a UTF-8 path");
    assert_contents(deb).await;

    let _purge = PurgeOnDrop;
    succeed("dpkg", &["-i", deb], DPKG_DEADLINE).await;
    assert_installed().await;
    let checked = ["--check-config", "--config", CONFIG];
    let out = succeed(BINARY, &checked, DPKG_DEADLINE).await;
    assert_eq!(out.trim(), "proxy-server: configuration OK");
    // The service's user can read what the service reads.
    let as_service = [&["-u", "proxy-server", "--", BINARY][..], &checked[..]].concat();
    succeed("runuser", &as_service, DPKG_DEADLINE).await;

    succeed("dpkg", &["-r", "proxy-server"], DPKG_DEADLINE).await;
    assert!(!Path::new(BINARY).exists() && !Path::new(UNIT).exists());
    assert!(Path::new(CONFIG).exists(), "remove keeps the conffile");
    succeed("dpkg", &["--purge", "proxy-server"], DPKG_DEADLINE).await;
    for gone in [CONFIG, "/etc/proxy-server", LOGS] {
        assert!(!Path::new(gone).exists(), "purge leaves {gone}");
    }
    assert!(!account_exists("passwd").await, "purge leaves the user");
    assert!(!account_exists("group").await, "purge leaves the group");
    assert!(!installed().await);
}
