
// The page: every REFRESH_MS it reads /stats (totals), /stats/series (the charts) and
// /stats/top (the lists) and redraws. Names in the lists come from clients, so they are
// only ever set as text, never as markup.

const REFRESH_MS = 5000;
// The four results, in the words the cards, the chart, /stats/series and /stats/top
// share (docs/observability.md): each is a fixed sum of the access log's outcomes.
const RESULTS = [
  { key: "allowed", name: "allowed", color: "#393" },
  { key: "denied", name: "denied by policy", color: "#c33" },
  { key: "login_required", name: "login required", color: "#e90" },
  { key: "errors", name: "errors", color: "#80c" },
];
const LISTS = [
  { key: "destinations_by_requests", title: "Destinations by requests", total: "requests", format: count },
  { key: "destinations_by_bytes", title: "Destinations by bytes", total: "bytes", format: bytes },
  { key: "users_by_requests", fallback: "clients_by_requests", title: "Users by requests", total: "requests", format: count, others: "others, or no user" },
  { key: "users_by_bytes", fallback: "clients_by_bytes", title: "Users by bytes", total: "bytes", format: bytes, others: "others, or no user" },
  { key: "denied", title: "Denied by policy", detail: "rule or reason", format: count },
  { key: "failing", title: "Failing origins (502, 504, 5xx)", detail: "last status", format: count },
];
let lastTop = null;
let lastSeries = null;
let span = "recent";
let refreshes = 0;

function fill(id, rows) {
  const table = document.getElementById(id);
  table.textContent = "";
  for (const [label, value, className] of rows) {
    const row = table.insertRow();
    if (className) row.className = className;
    row.insertCell().textContent = label;
    const cell = row.insertCell();
    cell.className = "n";
    cell.textContent = value;
  }
}

function renderTotals(s) {
  const r = s.requests;
  const total = r.allowed + r.blocked + r.auth_failed + r.malformed + r.upstream_error + r.tunnel;
  document.getElementById("active").textContent = s.connections_active;
  document.getElementById("tunnels").textContent = s.tunnels_active;
  fill("requests", [["allowed", r.allowed + r.tunnel], ["forwarded or from the cache", r.allowed, "part"],
    ["tunnels", r.tunnel, "part"], ["denied by policy", r.blocked], ["login required", r.auth_failed],
    ["errors", r.malformed + r.upstream_error], ["bad requests", r.malformed, "part"],
    ["origin failures", r.upstream_error, "part"], ["total", total],
    ["connections accepted", s.connections_accepted]]);
  fill("traffic", [["client → proxy", bytes(s.bytes_from_client)], ["proxy → client", bytes(s.bytes_to_client)],
    ["proxy → origin", bytes(s.bytes_to_origin)], ["origin → proxy", bytes(s.bytes_from_origin)]]);
  const lookups = s.cache_hits + s.cache_misses;
  fill("cache", [["hits", s.cache_hits], ["misses", s.cache_misses],
    ["hit ratio", lookups === 0 ? "–" : (100 * s.cache_hits / lookups).toFixed(1) + "%"],
    ["evictions", s.cache_evictions], ["entries", s.cache_entries], ["held", bytes(s.cache_bytes_held)]]);
  fill("health", [["log lines dropped", s.log_lines_dropped], ["panics caught", s.panics_caught]]);
  const d = s.request_durations;
  let below = 0;
  const rows = d.buckets.map(b => {
    const inBucket = b.count - below;
    below = b.count;
    return [b.le_seconds === null ? "slower" : "≤ " + (b.le_seconds * 1000) + " ms", inBucket];
  });
  rows.push(["mean", d.count === 0 ? "–" : (1000 * d.sum_seconds / d.count).toFixed(1) + " ms"]);
  fill("durations", rows);
}

// The results card: the four results over the lists' span, with their shares as one bar.
function renderResults(results) {
  const values = document.getElementById("results");
  const bar = document.getElementById("results-bar");
  values.textContent = "";
  bar.textContent = "";
  const total = RESULTS.reduce((sum, result) => sum + results[result.key], 0);
  for (const result of RESULTS) {
    const n = results[result.key];
    const share = total === 0 ? 0 : 100 * n / total;
    const item = document.createElement("div");
    item.title = share.toFixed(1) + "% of " + total;
    const value = document.createElement("div");
    value.className = "value";
    value.id = "result-" + result.key;
    value.textContent = n;
    const label = document.createElement("div");
    label.className = "label";
    label.style.setProperty("--swatch", result.color);
    label.textContent = result.name;
    item.append(value, label);
    values.appendChild(item);
    const part = document.createElement("div");
    part.style.width = share + "%";
    part.style.background = result.color;
    bar.appendChild(part);
  }
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = span === "recent" ? "requests, last 15 min" : "requests since start";
  values.appendChild(label);
}

function renderCharts(series) {
  const points = series.points;
  const latest = points[points.length - 1];
  if (latest) {
    const rate = RESULTS.reduce((sum, result) => sum + latest.results[result.key], 0);
    document.getElementById("rps").textContent = count(rate);
  }
  const times = points.map(p => p.unix_ms);
  const spanMs = series.span_seconds * 1000;
  const now = series.now_unix_ms;
  const draw = (id, lines, format, round) => drawChart(document.getElementById("chart-" + id),
    document.getElementById("legend-" + id), times, lines, spanMs, now, format, round);
  draw("requests", RESULTS.map(result => (
    { name: result.name, color: result.color, values: points.map(p => p.results[result.key]) })), count);
  draw("bytes", [
    { name: "to clients", color: "#36c", values: points.map(p => p.bytes_to_clients) },
    { name: "from clients", color: "#c63", values: points.map(p => p.bytes_from_clients) },
  ], v => bytes(v) + "/s", roundUpBytes);
  draw("open", [
    { name: "connections", color: "#345", values: points.map(p => p.connections) },
    { name: "tunnels", color: "#3a9", values: points.map(p => p.tunnels) },
  ], count);
  draw("latency", [
    { name: "p50", color: "#36c", values: points.map(p => p.p50_ms) },
    { name: "p99", color: "#c33", values: points.map(p => p.p99_ms) },
  ], v => count(v) + " ms");
}

function cell(row, className, text, title) {
  const element = row.insertCell();
  element.className = className;
  element.textContent = text;
  if (title) element.title = title;
  return element;
}

function renderList(list, lists) {
  const useFallback = list.fallback && lists[list.key].length === 0;
  const key = useFallback ? list.fallback : list.key;
  const entries = lists[key];
  const panel = document.createElement("div");
  panel.className = "panel";
  const title = document.createElement("h3");
  title.textContent = useFallback ? list.title.replace("Users", "Clients") : list.title;
  panel.appendChild(title);
  if (entries.length === 0) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.textContent = "none";
    panel.appendChild(empty);
    return panel;
  }
  const table = document.createElement("table");
  table.className = "top";
  table.id = "top-" + list.key;
  const largest = entries[0].value || 1;
  for (const entry of entries) {
    const row = table.insertRow();
    row.dataset.name = entry.name;
    cell(row, "name", entry.name, entry.name);
    const estimate = entry.overcount > 0 ? "≈" : "";
    cell(row, "n", estimate + list.format(entry.value), entry.overcount > 0 ? "at least " + list.format(entry.value - entry.overcount) : "");
    if (list.detail) {
      cell(row, "detail", entry.detail || "–", list.detail + ": " + (entry.detail || "–"));
    } else {
      const bar = document.createElement("div");
      bar.style.width = (100 * entry.value / largest) + "%";
      cell(row, "share", "").appendChild(bar);
    }
  }
  if (list.total) {
    const listed = entries.reduce((sum, e) => sum + e.value, 0);
    const others = lists[list.total] - listed;
    if (others > 0) {
      const row = table.insertRow();
      row.className = "others";
      cell(row, "name", (!useFallback && list.others) || "all others");
      cell(row, "n", list.format(others));
      cell(row, "share", "");
    }
  }
  panel.appendChild(table);
  return panel;
}

function renderTop(top) {
  const lists = top[span];
  renderResults(lists.results);
  const container = document.getElementById("top-lists");
  container.textContent = "";
  for (const list of LISTS) container.appendChild(renderList(list, lists));
  for (const name of ["recent", "since_start"]) {
    document.getElementById("span-" + name).setAttribute("aria-pressed", String(name === span));
  }
}

async function json(response) {
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const options = { cache: "no-store" };
    const [stats, series, top] = await Promise.all([
      fetch("/stats", options).then(json),
      fetch("/stats/series", options).then(json),
      fetch("/stats/top", options).then(json),
    ]);
    renderTotals(stats);
    lastSeries = series;
    renderCharts(series);
    lastTop = top;
    renderTop(top);
    refreshes++;
    document.body.dataset.refreshes = refreshes;
    status.className = "";
    status.textContent = "updated " + new Date().toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s"
      + (series.points.length === 0 ? " · the charts start after the first " + series.interval_seconds + " s" : "");
  } catch (error) {
    status.className = "error";
    status.textContent = "cannot read the statistics: " + error.message;
  }
}

for (const name of ["recent", "since_start"]) {
  document.getElementById("span-" + name).addEventListener("click", () => {
    span = name;
    if (lastTop) renderTop(lastTop);
  });
}
window.addEventListener("resize", () => { if (lastSeries) renderCharts(lastSeries); });
refresh();
setInterval(refresh, REFRESH_MS);
