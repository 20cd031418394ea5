//! The dashboard page in a real browser: headless Chromium loads the page from the
//! proxy's metrics listener after the known traffic, runs the page's script (virtual
//! time lets its first refresh finish, then the DOM is dumped), and the rendered DOM must
//! hold chart points, top lists naming the destinations in order, and cards whose
//! numbers agree with `/stats/series` and `/stats/top`. At 1400×1000 and 1920×1080 a
//! probe measures the layout: the four charts share a row, every top list (filled to
//! ten entries) is above the fold, no number or rule name is cut, and the lines of a
//! chart differ in dash and width so equal values never hide one another. The
//! 1400×1000 screenshot is left in the target folder (`docs/dashboard.png` is a copy).
//! `run.sh test` installs Debian's `chromium` when it is missing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::{RESULTS, Traffic, known_traffic, series_with_all_traffic};
use crate::common::observe::{get, get_json};
use crate::common::temp_dir;

/// How long Chromium may take to start, load the page and dump it (a cold start on a
/// busy CI machine takes a few seconds).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);
/// Virtual time the page gets: enough for the first refresh's three fetches and drawing,
/// which Chromium runs before advancing virtual time.
const VIRTUAL_TIME_MS: u32 = 3000;
/// The sizes the layout is checked at: a laptop and a desktop screen.
const SIZES: [(u32, u32); 2] = [(1400, 1000), (1920, 1080)];

/// Runs headless Chromium on `url` at `size` with `extra` arguments; its stdout.
async fn chromium(url: &str, (width, height): (u32, u32), extra: &[&str]) -> String {
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
            "--hide-scrollbars",
            // Containers often give /dev/shm only 64 MB, which is not enough for Chromium.
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_DEADLINE, child)
        .await
        .expect("chromium finished within its deadline")
        .expect("chromium is installed (run.sh test installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Measures the rendered page once its first refresh is drawn; the result goes into
/// `<pre id="probe">` as JSON. Each top list is first filled to eleven rows with long
/// names (copies of its first row): ten entries and "all others", as on a busy proxy.
const PROBE: &str = r##"<script>
(function probe() {
  if (!document.body.dataset.refreshes) { setTimeout(probe, 20); return; }
  for (const table of document.querySelectorAll("#top-lists table.top")) {
    const first = table.rows[0];
    while (table.rows.length < 11) {
      const copy = first.cloneNode(true);
      copy.cells[0].textContent = "a-rather-long-destination-name.cdn.example.com:443";
      first.parentNode.appendChild(copy);
    }
  }
  const rect = element => element.getBoundingClientRect();
  const cut = [...document.querySelectorAll("#top-lists td.n, #top-lists td.detail, .card .value, .card .label")]
    .filter(cell => cell.scrollWidth > cell.clientWidth + 1).map(cell => cell.textContent);
  const lines = [...document.querySelectorAll("#chart-requests polyline, #chart-requests circle")]
    .map(line => [line.dataset.line, line.getAttribute("stroke-dasharray"), line.getAttribute("stroke-width") || line.getAttribute("r")]);
  const report = {
    viewport: [innerWidth, innerHeight],
    chart_tops: [...document.querySelectorAll(".charts .panel")].map(p => Math.round(rect(p).top)),
    list_bottoms: [...document.querySelectorAll("#top-lists .panel")].map(p => Math.round(rect(p).bottom)),
    cut: cut,
    lines: lines,
    results: Object.fromEntries([...document.querySelectorAll("[id^=result-]")].filter(e => e.id !== "result-values")
      .map(e => [e.id.slice("result-".length), e.textContent])),
    rps: document.getElementById("rps").textContent,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
})();
</script>
"##;

/// The page as the metrics listener serves it, loaded from a file with its addresses
/// pointed back at `metrics` and the probe added; what the probe measured at `size`,
/// and the whole DOM.
async fn probe(metrics: SocketAddr, size: (u32, u32)) -> (Value, String) {
    let (_, page) = get(metrics, "/").await;
    let page = String::from_utf8(page).expect("UTF-8");
    let page = page
        .replacen(
            "<head>",
            &format!("<head><base href=\"http://{metrics}/\">"),
            1,
        )
        .replacen("</body>", &format!("{PROBE}</body>"), 1);
    let dir = temp_dir("probe");
    let file = dir.join("dashboard.html");
    std::fs::write(&file, page).expect("write the page");
    let url = format!("file://{}", file.display());
    // The page's fetches go from a file to the metrics listener: another origin.
    let extra = ["--disable-web-security", "--dump-dom"];
    let dom = chromium(&url, size, &extra).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = element(&dom, "probe", "</pre>");
    let json = report.split_once('>').map_or("", |(_, json)| json);
    let json = json
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let report = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}\n{dom}"));
    (report, dom)
}

/// Takes a screenshot of the dashboard at `size` into `path`.
async fn screenshot(metrics: SocketAddr, size: (u32, u32), path: &Path) {
    let _ = std::fs::remove_file(path);
    let arg = format!("--screenshot={}", path.display());
    chromium(&format!("http://{metrics}/"), size, &[&arg]).await;
    let png = std::fs::read(path).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{path:?}"
    );
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

/// The layout at `size` as the probe measured it.
fn assert_layout(report: &Value, size: (u32, u32)) {
    // The window's size; the page gets what the browser's own bars leave of its height.
    let viewport = numbers(&report["viewport"]);
    assert_eq!(viewport.first(), Some(&u64::from(size.0)), "{report}");
    let fold = viewport[1];
    assert!(
        fold > u64::from(size.1) * 4 / 5 && fold <= u64::from(size.1),
        "{report}"
    );
    let tops: Vec<u64> = numbers(&report["chart_tops"]);
    assert_eq!(tops.len(), 4, "{report}");
    assert!(
        tops.iter().all(|&top| top == tops[0]),
        "the four charts share a row: {report}"
    );
    let bottoms = numbers(&report["list_bottoms"]);
    assert_eq!(bottoms.len(), 6, "{report}");
    assert!(
        bottoms.iter().all(|&bottom| bottom <= fold),
        "every top list above the fold at {size:?}: {report}"
    );
    assert_eq!(
        report["cut"],
        serde_json::json!([]),
        "nothing cut but names: {report}"
    );
    let lines = report["lines"].as_array().expect("lines");
    let names: Vec<&str> = lines.iter().filter_map(|l| l[0].as_str()).collect();
    let mut styles: Vec<String> = lines.iter().map(|l| format!("{} {}", l[1], l[2])).collect();
    for name in ["allowed", "denied by policy", "login required", "errors"] {
        assert!(names.contains(&name), "{name} drawn: {report}");
    }
    styles.sort();
    styles.dedup();
    assert_eq!(
        styles.len(),
        lines.len(),
        "each line its own dash and width: {report}"
    );
}

fn numbers(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_u64)
        .collect()
}

/// The cards say what `/stats/top` and `/stats/series` say, in the same four words, and
/// that is the known traffic.
async fn assert_cards_agree(traffic: &Traffic, report: &Value, series_counts: [u64; 4]) {
    let top = get_json(traffic.metrics, "/stats/top").await;
    let stats = get_json(traffic.metrics, "/stats").await;
    let requests = &stats["requests"];
    let from_stats = |key: &str| requests[key].as_u64().unwrap_or(u64::MAX);
    let stats_results = [
        from_stats("allowed") + from_stats("tunnel"),
        from_stats("blocked"),
        from_stats("auth_failed"),
        from_stats("malformed") + from_stats("upstream_error"),
    ];
    for (i, (result, known)) in RESULTS.into_iter().enumerate() {
        let card = report["results"][result].as_str().unwrap_or_default();
        assert_eq!(card, known.to_string(), "the {result} card: {report}");
        assert_eq!(
            top["recent"]["results"][result], known,
            "/stats/top {result}"
        );
        assert_eq!(series_counts[i], known, "/stats/series {result}");
        assert_eq!(stats_results[i], known, "/stats {result}");
    }
}

#[tokio::test]
async fn the_page_draws_charts_and_lists_the_destinations_in_order() {
    let mut traffic = known_traffic().await;
    // The charts need a sampled point with the traffic in it.
    let (_, series_counts) = series_with_all_traffic(traffic.metrics).await;
    let (report, dom) = probe(traffic.metrics, SIZES[0]).await;

    let body = element(&dom, "status", "</div>");
    assert!(
        body.contains("updated"),
        "the first refresh succeeded: {body}"
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
    let listed = element(&dom, "top-destinations_by_requests", "</table>");
    let names = attribute_values(listed, "data-name");
    assert_eq!(
        names.get(..3),
        Some(&traffic.destinations.each_ref().map(String::as_str)[..]),
        "{listed}"
    );
    let denied = element(&dom, "top-denied", "</table>");
    assert_eq!(
        attribute_values(denied, "data-name")[0],
        traffic.blocked.as_str()
    );
    let failing = element(&dom, "top-failing", "</table>");
    assert_eq!(
        attribute_values(failing, "data-name")[0],
        traffic.failing.as_str()
    );
    assert_cards_agree(&traffic, &report, series_counts).await;
    assert_layout(&report, SIZES[0]);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-1400x1000.png");
    screenshot(traffic.metrics, SIZES[0], &shot).await;
    traffic.proxy.stop().await;
}

#[tokio::test]
async fn the_page_fits_a_1920_by_1080_screen() {
    let mut traffic = known_traffic().await;
    series_with_all_traffic(traffic.metrics).await;
    let (report, _) = probe(traffic.metrics, SIZES[1]).await;
    assert_layout(&report, SIZES[1]);
    traffic.proxy.stop().await;
}
