//! Running as a systemd service: `Type=notify` against a notify socket made by the test
//! (READY=1 only once the port accepts, STOPPING=1 on SIGTERM while /readyz turns 503
//! and the drain delay keeps accepting), and `deploy/proxy-server.service` accepted by
//! `systemd-analyze verify` where that tool is installed.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::fleet::{readyz, request, signal};
use crate::common::observe::get;
use crate::common::{LOCAL, Origin, STEP, temp_dir, within};

/// The next datagram on `socket` (blocking read with the step deadline, off the runtime).
async fn next_state(socket: &UnixDatagram) -> String {
    let socket = socket.try_clone().expect("clone");
    let received = tokio::task::spawn_blocking(move || {
        socket.set_read_timeout(Some(STEP)).expect("timeout");
        let mut buffer = [0u8; 512];
        let n = socket.recv(&mut buffer).expect("a notification in time");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    });
    received.await.expect("receiver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_after_listening_and_stopping_on_sigterm() {
    let origin = Origin::fixed("notified").await;
    let dir = temp_dir("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy-server"))
        .args(LOCAL)
        .args([
            "--port",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--drain-delay",
            "1",
        ])
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .env("NOTIFY_SOCKET", &path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");

    assert_eq!(next_state(&socket).await, "READY=1");
    // READY=1 came: the port and the metrics listener are already bound.
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut proxy, mut metrics) = (None, None);
    within(async {
        while proxy.is_none() || metrics.is_none() {
            let line = lines.next_line().await.expect("stderr").expect("a line");
            if let Some(addr) = line.split("listening on ").nth(1) {
                proxy = addr.trim().parse::<std::net::SocketAddr>().ok();
            }
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                metrics = rest
                    .trim()
                    .trim_end_matches('/')
                    .parse::<std::net::SocketAddr>()
                    .ok();
            }
        }
    })
    .await;
    let (proxy, metrics) = (proxy.expect("proxy"), metrics.expect("metrics"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert_eq!(request(proxy, origin.addr, "/ready").await, Ok(()));
    assert_eq!(readyz(metrics).await, 200);
    let (health, body) = get(metrics, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && body == b"ok\n",
        "{health}"
    );

    assert!(signal(child.id().expect("pid"), "TERM"));
    assert_eq!(next_state(&socket).await, "STOPPING=1");
    assert_eq!(readyz(metrics).await, 503, "not ready once stopping");
    // Still accepting during the drain delay.
    assert_eq!(request(proxy, origin.addr, "/draining").await, Ok(()));
    let status = within(child.wait()).await.expect("exit");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_unit_file_passes_systemd_analyze_verify() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed; the unit file is not verified here");
        return;
    };
    assert!(version.status.success());
    let unit = include_str!("../../deploy/proxy-server.service")
        .replace("/usr/bin/proxy-server", env!("CARGO_BIN_EXE_proxy-server"));
    let dir = temp_dir("unit");
    let path = dir.join("proxy-server.service");
    std::fs::write(&path, unit).expect("write the unit");
    let output = within(
        tokio::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output(),
    )
    .await
    .expect("systemd-analyze runs");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {errors}");
}
