//! The dashboard page in a real browser: headless Chromium loads `/` from the proxy's
//! metrics listener after the known traffic, runs the page's script (virtual time lets
//! its first refresh finish, then the DOM is dumped), and the rendered DOM must hold
//! chart points and top lists naming the destinations in order. `run.sh test` installs
//! Debian's `chromium` when it is missing.

use std::process::Stdio;
use std::time::Duration;

use super::{known_traffic, series_with_all_traffic};
use crate::common::temp_dir;

/// How long Chromium may take to start, load the page and dump it (a cold start on a
/// busy CI machine takes a few seconds).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);
/// Virtual time the page gets: enough for the first refresh's three fetches and drawing,
/// which Chromium runs before advancing virtual time.
const VIRTUAL_TIME_MS: u32 = 3000;

/// The DOM Chromium rendered for `url`, after the page's script ran.
async fn rendered_dom(url: &str) -> String {
    let profile = temp_dir("chromium-profile");
    let child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Containers often give /dev/shm only 64 MB, which is not enough for Chromium.
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_DEADLINE, child)
        .await
        .expect("chromium finished within its deadline")
        .expect("chromium is installed (run.sh test installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium failed: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The text of the element whose opening tag carries `id="{id}"`, up to `end`.
fn element<'a>(dom: &'a str, id: &str, end: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} missing from the DOM:\n{dom}"));
    let rest = &dom[start..];
    let stop = rest.find(end).unwrap_or(rest.len());
    &rest[..stop]
}

/// Every value of `attribute` in `html`, in document order.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let value = &html[at + needle.len()..];
            value.find('"').map(|end| &value[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_page_draws_charts_and_lists_the_destinations_in_order() {
    let mut traffic = known_traffic().await;
    // The charts need a sampled point with the traffic in it.
    series_with_all_traffic(traffic.metrics).await;
    let dom = rendered_dom(&format!("http://{}/", traffic.metrics)).await;

    let body = element(&dom, "status", "</div>");
    assert!(
        body.contains("updated"),
        "the first refresh succeeded: {body}"
    );
    assert!(
        dom.contains("data-refreshes=\""),
        "the page marked its refresh"
    );
    for chart in ["requests", "bytes", "open", "latency"] {
        let svg = element(&dom, &format!("chart-{chart}"), "</svg>");
        let points: Vec<u64> = attribute_values(svg, "data-points")
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(
            points.first() > Some(&0),
            "{chart} has no data points: {svg}"
        );
        assert!(
            svg.contains("<polyline") || svg.contains("<circle"),
            "{chart} draws its points: {svg}"
        );
    }
    let requests = element(&dom, "chart-requests", "</svg>");
    assert!(attribute_values(requests, "data-line").contains(&"allowed"));

    let listed = element(&dom, "top-destinations_by_requests", "</table>");
    let names = attribute_values(listed, "data-name");
    assert_eq!(
        names.get(..3),
        Some(&traffic.destinations.each_ref().map(String::as_str)[..]),
        "{listed}"
    );
    let blocked = element(&dom, "top-blocked", "</table>");
    assert_eq!(
        attribute_values(blocked, "data-name"),
        [traffic.blocked.as_str()]
    );
    let failing = element(&dom, "top-failing", "</table>");
    assert_eq!(
        attribute_values(failing, "data-name"),
        [traffic.failing.as_str()]
    );
    traffic.proxy.stop().await;
}
