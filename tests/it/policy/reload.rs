//! SIGHUP re-reads the whole policy: new rules apply to new requests while a tunnel
//! opened under the old ones keeps going; a broken file leaves the policy in force and
//! logs `file:line`; settings that need a restart are logged as such.

use std::time::Duration;

use super::policy_files;
use crate::common::*;

fn tunnel_policy(action: &str, port: u16) -> String {
    format!("[[rules]]\nname = \"echo\"\naction = \"{action}\"\nports = [\"{port}\"]\n")
}

async fn connect_status(proxy: std::net::SocketAddr, authority: &str) -> u16 {
    status(&crate::common::access::refused_connect(proxy, authority, "", "").await)
}

#[tokio::test]
async fn reload_swaps_the_policy_and_keeps_a_tunnel_open() {
    let echo = echo_origin().await;
    let authority = format!("127.0.0.1:{}", echo.port());
    let (files, path) = policy_files("reload", &tunnel_policy("allow", echo.port()));
    let mut proxy = ProxyProcess::start(&["--config", text(&path)]).await;
    let mut open = open_tunnel(proxy.addr, &authority, "").await;
    assert_echoes(&mut open, b"before").await;

    let denying = format!(
        "{}{}",
        super::LOCAL_KEYS,
        tunnel_policy("deny", echo.port())
    );
    files.write("proxy.toml", denying);
    proxy.signal("HUP").await;
    let mut refused = false;
    for _ in 0..250 {
        let mut stream = within(tokio::net::TcpStream::connect(proxy.addr))
            .await
            .unwrap();
        let request = connect_request(&authority, "");
        within(tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            request.as_bytes(),
        ))
        .await
        .unwrap();
        let head = read_head(&mut stream).await;
        if head.starts_with(b"HTTP/1.1 403") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the new rule never applied:\n{}",
        proxy.stderr.text()
    );
    assert_echoes(&mut open, b"the old tunnel still flows").await;

    // A broken file: the deny rule stays, and the log names the line.
    let broken = format!("{}[[rules]]\naction = \"alow\"\n", super::LOCAL_KEYS);
    files.write("proxy.toml", broken);
    proxy.signal("HUP").await;
    proxy
        .stderr
        .wait_for(&format!("{}:4: `action`", text(&path)), 1)
        .await;
    assert_eq!(connect_status(proxy.addr, &authority).await, 403);

    // A new listen address needs a restart: said so, and the rules still reload.
    let moved = format!(
        "{}host = \"127.0.0.2\"\n{}",
        super::LOCAL_KEYS,
        tunnel_policy("allow", echo.port())
    );
    files.write("proxy.toml", moved);
    proxy.signal("HUP").await;
    proxy
        .stderr
        .wait_for("takes effect after a restart", 1)
        .await;
    assert!(
        proxy.stderr.text().contains("listen address"),
        "{}",
        proxy.stderr.text()
    );
    let mut again = open_tunnel(proxy.addr, &authority, "").await;
    assert_echoes(&mut again, b"allowed again").await;
    assert_echoes(&mut open, b"and the first one too").await;
    assert!(proxy.is_running());
}
