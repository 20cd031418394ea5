// Line charts as inline SVG, drawn by this page alone (no library, nothing fetched).
// Each chart is one <svg class="chart">: a time axis over the series' span ending now,
// a value axis from zero to a round maximum, and one polyline per line, broken where a
// value is missing. The drawn point count is left in the svg's data-points attribute.

const SVG_NS = document.querySelector("svg").namespaceURI;
const CHART_HEIGHT = 130;
// Lines that take the same values lie on one another: each line of a chart has its own
// dash pattern and width, drawn widest first, so every one stays visible beneath the next.
const STROKES = [
  { dash: "", width: 3.4 },
  { dash: "7 4", width: 2.4 },
  { dash: "2 3", width: 2.2 },
  { dash: "10 3 2 3", width: 1.4 },
];
const PAD = { left: 66, right: 8, top: 8, bottom: 20 };

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// 1, 2 or 5 times a power of ten, at least `value`.
function roundUp(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

// The same in binary units, for byte rates: 1, 2 or 5 times a power of 1024 times a power of ten.
function roundUpBytes(value) {
  let scale = 1;
  while (value / scale >= 1024) scale *= 1024;
  return roundUp(value / scale) * scale;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : parseFloat(n.toFixed(1))) + " " + units[i];
}

function count(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
  return String(n < 10 ? parseFloat(n.toFixed(2)) : parseFloat(n.toFixed(1)));
}

// Draws `lines` ([{ name, color, values }]) over `times` (Unix ms), the window being the
// `spanMs` before `nowMs`; `format` labels values, `round` picks the axis maximum. Fills
// `legend` with each line's latest value.
function drawChart(svg, legend, times, lines, spanMs, nowMs, format, round) {
  const width = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 600);
  svg.setAttribute("viewBox", "0 0 " + width + " " + CHART_HEIGHT);
  svg.textContent = "";
  const plotWidth = width - PAD.left - PAD.right;
  const plotHeight = CHART_HEIGHT - PAD.top - PAD.bottom;
  let highest = 0;
  for (const line of lines) {
    for (const value of line.values) if (value !== null && value > highest) highest = value;
  }
  const top = (round || roundUp)(highest);
  const x = t => PAD.left + plotWidth * (1 - (nowMs - t) / spanMs);
  const y = v => PAD.top + plotHeight * (1 - v / top);
  for (const fraction of [0, 0.5, 1]) {
    const at = y(top * fraction);
    svg.appendChild(svgElement("line", { class: "grid-line", x1: PAD.left, x2: width - PAD.right, y1: at, y2: at }));
    svg.appendChild(svgElement("text", { x: PAD.left - 4, y: at + 4, "text-anchor": "end" }, format(top * fraction)));
  }
  const minutes = Math.round(spanMs / 60000);
  for (const ago of [minutes, Math.round(minutes * 2 / 3), Math.round(minutes / 3), 0]) {
    const label = ago === 0 ? "now" : "−" + ago + " min";
    const anchor = ago === minutes ? "start" : ago === 0 ? "end" : "middle";
    svg.appendChild(svgElement("text", { x: x(nowMs - ago * 60000), y: CHART_HEIGHT - 4, "text-anchor": anchor }, label));
  }
  let drawn = 0;
  lines.forEach((line, index) => {
    const stroke = STROKES[index % STROKES.length];
    let segment = [];
    const flush = () => {
      if (segment.length === 1) {
        // A lone point (between gaps) shows as a dot.
        const [cx, cy] = segment[0].split(",");
        svg.appendChild(svgElement("circle", { cx: cx, cy: cy, r: 1 + stroke.width, fill: line.color, "data-line": line.name }));
      } else if (segment.length > 1) {
        svg.appendChild(svgElement("polyline", { points: segment.join(" "), stroke: line.color,
          "stroke-width": stroke.width, "stroke-dasharray": stroke.dash || "none", "data-line": line.name }));
      }
      segment = [];
    };
    line.values.forEach((value, i) => {
      if (value === null || times[i] < nowMs - spanMs) { flush(); return; }
      segment.push(x(times[i]).toFixed(1) + "," + y(value).toFixed(1));
      drawn++;
    });
    flush();
  });
  svg.dataset.points = drawn;
  legend.textContent = "";
  lines.forEach((line, index) => {
    const stroke = STROKES[index % STROKES.length];
    const latest = [...line.values].reverse().find(v => v !== null);
    const entry = document.createElement("span");
    const swatch = svgElement("svg", { viewBox: "0 0 26 10" });
    swatch.appendChild(svgElement("line", { x1: 0, x2: 26, y1: 5, y2: 5, stroke: line.color,
      "stroke-width": stroke.width, "stroke-dasharray": stroke.dash || "none" }));
    entry.append(swatch, line.name + " " + (latest === undefined ? "–" : format(latest)));
    legend.appendChild(entry);
  });
}
