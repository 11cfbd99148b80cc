// A small hand-written SVG line chart: a few series over time, y from 0 to the largest value.

const COLORS = ["#b4472a", "#1a73e8", "#2e7d32", "#8e24aa", "#f9a825", "#00838f"];
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// Rounds up to 1, 2 or 5 times a power of ten, so the axis label is a plain number.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 5, 10]) if (value <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

// series: [{label, points: [[timeMs, value], ...]}]; maxWindowMs: the most history to show. The
// chart spans what it has, at least a minute (RabbitMQ's default), at most maxWindowMs.
export function renderChart(container, title, series, maxWindowMs, unit) {
  const width = container.clientWidth;
  container.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = title;
  container.append(h);
  // Drawn at the container's own width, so text keeps its size at any width.
  const W = Math.max(240, (width || 400) - 18), H = 150, L = 44, B = 18, T = 6, R = 6;
  const now = Date.now();
  let first = now;
  for (const s of series) if (s.points.length) first = Math.min(first, s.points[0][0]);
  const windowMs = Math.min(maxWindowMs, Math.max(60 * 1000, now - first));
  const t0 = now - windowMs;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, v);
  const top = niceMax(max);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const x = (t) => L + ((t - t0) / windowMs) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - B - T);
  for (const frac of [0, 0.5, 1]) {
    const yy = y(top * frac);
    svg.append(el("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e3e3e3" }));
    const label = el("text", { x: L - 4, y: yy + 4, "text-anchor": "end", "font-size": 10, fill: "#666" });
    label.textContent = fmt(top * frac);
    svg.append(label);
  }
  const tl = el("text", { x: W - R, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#666" });
  tl.textContent = "now";
  svg.append(tl);
  const tr = el("text", { x: L, y: H - 4, "font-size": 10, fill: "#666" });
  tr.textContent = `-${Math.round(windowMs / 1000)} s`;
  svg.append(tr);
  series.forEach((s, i) => {
    const pts = s.points.filter(([t]) => t >= t0).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (pts.length === 1) pts.push(pts[0]);
    if (pts.length > 0) {
      svg.append(el("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    }
  });
  container.append(svg);
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[i % COLORS.length];
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    item.append(swatch, `${s.label}: ${fmt(last)}${unit || ""}`);
    legend.append(item);
  });
  container.append(legend);
}
