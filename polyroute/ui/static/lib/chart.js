// Time-series charts on uPlot (vendor/uplot.js, loaded as a classic script: window.uPlot).
import { html, useEffect, useRef } from "./html.js";
import { compact } from "./format.js";

export const COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#0c8599", "#c92a2a", "#f59f00", "#5c7cfa", "#868e96"];

function data(t, series, stacked) {
  if (!stacked) return [t, ...series.map((s) => s.values)];
  // Stacked areas: each line is the running sum; drawn largest first so smaller ones paint over it.
  // A bucket where no series has a value stays a gap, not a zero.
  const empty = t.map((_, i) => series.every((s) => s.values[i] === null || s.values[i] === undefined));
  const sums = [];
  let acc = t.map(() => 0);
  for (const s of series) {
    acc = acc.map((v, i) => v + (s.values[i] || 0));
    sums.push(acc.map((v, i) => (empty[i] ? null : v)));
  }
  return [t, ...sums.reverse()];
}

export function TimeChart({ title, t, series, height = 200, fmt = compact, stacked = false, testid }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el || !t || t.length === 0) return undefined;
    const ordered = stacked ? [...series].reverse() : series;
    const opts = {
      width: Math.max(200, el.clientWidth),
      height,
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        {},
        ...ordered.map((s, i) => {
          const idx = stacked ? series.length - 1 - i : i;
          const color = s.color || COLORS[idx % COLORS.length];
          // A value with empty buckets on both sides draws no line: show points when there is one.
          const none = (v) => v === null || v === undefined;
          const gaps = s.values.some((v, i, a) => !none(v) && (i === 0 || none(a[i - 1])) && (i === a.length - 1 || none(a[i + 1])));
          return {
            label: s.label,
            points: gaps ? { show: true, size: 5 } : undefined,
            stroke: color,
            width: 1.5,
            fill: stacked || s.fill ? color + (stacked ? "cc" : "22") : undefined,
            value: (u, v, si, di) => {
              const raw = di === null || di === undefined ? v : ordered[si - 1].values[di];
              return raw === null || raw === undefined ? "–" : fmt(raw);
            },
          };
        }),
      ],
      axes: [{}, {
        values: (u, vals, axis, space, incr) => vals.map((v) => fmt(v, incr)),
        // Wide enough for the longest label ("$0.000012", "1.25 s").
        size: (u, values) => (values ? Math.max(...values.map((v) => String(v).length)) * 7 + 20 : 50),
      }],
    };
    const plot = new window.uPlot(opts, data(t, series, stacked), el);
    const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(200, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [t, series, stacked, height]);
  const empty = !t || t.length === 0;
  return html`<div class="panel chart" data-testid=${testid}>
    <div class="title">${title}</div>
    ${empty ? html`<p class="muted">No data.</p>` : html`<div ref=${box}></div>`}
  </div>`;
}
