//! The PAC file on HTTP listeners: `GET /proxy.pac` and `/wpad.dat` fetched by curl, the
//! generated one naming the listener (`PROXY` on plain HTTP, `HTTPS` on TLS), the
//! `--pac-file` contents as given, and other origin-form requests still refused.

use proxy_server::config::TlsFiles;

use crate::common::listeners::TestPki;
use crate::common::*;

/// `curl -i` of `url`: (exit code, the whole response, stderr).
async fn fetch(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["-i", url];
    args.extend(extra);
    let (code, out, err) = curl(&args).await;
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

#[tokio::test]
async fn a_generated_pac_names_the_listener_asked() {
    let proxy = Proxy::start().await;
    for path in ["/proxy.pac", "/wpad.dat"] {
        let (code, response, err) = fetch(&format!("http://{}{path}", proxy.addr), &[]).await;
        assert_eq!(code, 0, "{err}");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("Content-Type: application/x-ns-proxy-autoconfig\r\n"),
            "{response}"
        );
        let expected = format!("return \"PROXY 127.0.0.1:{}\";", proxy.addr.port());
        assert!(response.contains(&expected), "{response}");
    }
    // Any other path is still not a proxy request.
    let (_, response, _) = fetch(&format!("http://{}/other", proxy.addr), &[]).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    proxy.assert_healthy().await;

    let pki = TestPki::new();
    let files = TlsFiles {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    };
    let tls = Proxy::start_with(|c| c.listeners[0].tls = Some(files)).await;
    let url = format!("https://localhost:{}/proxy.pac", tls.addr.port());
    let (code, response, err) = fetch(&url, &["--cacert", text(&pki.ca)]).await;
    assert_eq!(code, 0, "{err}");
    let expected = format!("return \"HTTPS localhost:{}\";", tls.addr.port());
    assert!(response.contains(&expected), "{response}");
}

#[tokio::test]
async fn a_pac_file_is_served_as_given() {
    let files = Scratch::new("pac");
    let script =
        "function FindProxyForURL(url, host) {\n  return \"PROXY gw.example:3128; DIRECT\";\n}\n";
    let pac = files.write("proxy.pac", script);
    let proxy = Proxy::start_with(|c| c.pac_file = Some(pac)).await;
    let (code, out, err) = curl(&[&format!("http://{}/proxy.pac", proxy.addr)]).await;
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (0, script),
        "{err}"
    );
    let (_, head, _) = fetch(&format!("http://{}/wpad.dat", proxy.addr), &["-I"]).await;
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", script.len())),
        "{head}"
    );
    proxy.assert_healthy().await;
}
