// Number and time formatting shared by the pages.
const nf = new Intl.NumberFormat("en-US");

export function int(v) {
  return v === null || v === undefined ? "–" : nf.format(Math.round(v));
}

export function compact(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + "B";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return nf.format(Math.round(v * 100) / 100);
}

export function usd(v, step) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "$0";
  if (step) return "$" + v.toFixed(Math.max(0, Math.min(6, Math.ceil(-Math.log10(step)))));
  const a = Math.abs(v);
  if (a < 0.01) return "$" + v.toFixed(6);
  if (a < 100) return "$" + v.toFixed(4);
  return "$" + nf.format(Math.round(v * 100) / 100);
}

// `step`: an axis's tick increment, so close ticks get the decimals that tell them apart.
export function ms(v, step) {
  if (v === null || v === undefined) return "–";
  if (step && step < 1 && v < 1000) return v.toFixed(Math.min(3, Math.ceil(-Math.log10(step)))) + " ms";
  if (v >= 10000) return (v / 1000).toFixed(1) + " s";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  if (v < 10) return (Math.round(v * 10) / 10) + " ms";
  return Math.round(v) + " ms";
}

export function pct(v, digits = 1) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(digits) + "%";
}

export function time(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function ago(ts) {
  if (!ts) return "–";
  const s = Date.now() / 1000 - ts;
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

export function span(seconds) {
  if (seconds >= 86400) return seconds / 86400 + " d";
  if (seconds >= 3600) return seconds / 3600 + " h";
  return seconds / 60 + " min";
}
