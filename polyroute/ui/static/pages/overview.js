// Overview: requests, errors, latency and TTFT percentiles, tokens and spend over time.
import { html, useMemo, useState } from "../lib/html.js";
import { useApi, ErrorBox, Select, PERIODS, DimensionFilters, routeParams, setRouteParams } from "../lib/ui.js";
import { TimeChart } from "../lib/chart.js";
import * as f from "../lib/format.js";

function Card({ label, value, sub, testid }) {
  return html`<div class="card" data-testid=${testid}><div class="label">${label}</div>
    <div class="value">${value}</div>${sub ? html`<div class="sub">${sub}</div>` : null}</div>`;
}

function Breakdown({ rows, dim, title, names }) {
  return html`<div class="panel"><h2>${title}</h2><div class="table-wrap"><table>
    <thead><tr><th>${dim}</th><th class="num">requests</th><th class="num">errors</th>
      <th class="num">tokens in / out</th><th class="num">spend</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr>
      <td>${names ? names(r[dim]) : r[dim] || "–"}</td><td class="num">${f.int(r.requests)}</td>
      <td class="num">${f.int(r.errors)}</td>
      <td class="num">${f.compact(r.input_tokens)} / ${f.compact(r.output_tokens)}</td>
      <td class="num">${f.usd(r.cost)}</td></tr>`)}
    ${rows.length === 0 ? html`<tr><td colspan="5" class="muted">No requests.</td></tr>` : null}
    </tbody></table></div></div>`;
}

export function Overview({ filters }) {
  const [q, setQ] = useState(() => ({ since: "24h", ...routeParams() }));
  const update = (next) => {
    setQ(next);
    setRouteParams("overview", next);
  };
  const { data, error } = useApi("overview", q, 30);
  const br = useApi("overview/breakdown", q, 60);
  const s = data && data.series;
  const t = data ? data.t : [];
  const charts = useMemo(() => s && {
    requests: [{ label: "requests", values: s.requests, fill: true }, { label: "errors", values: s.errors, color: "#c92a2a" }],
    latency: [{ label: "p50", values: s.latency_p50 }, { label: "p99", values: s.latency_p99, color: "#e8590c" }],
    ttft: [{ label: "p50", values: s.ttft_p50 }, { label: "p99", values: s.ttft_p99, color: "#e8590c" }],
    tokens: [{ label: "input", values: s.input_tokens }, { label: "output", values: s.output_tokens, color: "#2b8a3e" }],
    cost: [{ label: "spend", values: s.cost, fill: true, color: "#ae3ec9" }],
  }, [data]);
  const keyName = (id) => {
    if (!id) return "(no key)";
    const k = filters && filters.keys.find((x) => x.id === id);
    return k ? `${k.name || "(unnamed)"} · ${k.prefix}` : id;
  };
  const tot = data && data.totals;
  return html`<div>
    <h1>Overview</h1>
    <div class="filters">
      <${Select} label="Period" value=${q.since} options=${PERIODS} testid="f-period" onChange=${(v) => update({ ...q, since: v })} />
      <${DimensionFilters} filters=${filters} value=${q} onChange=${update} />
      <span class="spacer"></span>
      ${data ? html`<span class="muted">buckets of ${f.span(data.width)} · query ${f.int(data.query_ms)} ms</span>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${tot ? html`<div class="cards">
      <${Card} label="Requests" value=${f.int(tot.requests)} testid="kpi-requests" />
      <${Card} label="Errors" value=${f.int(tot.errors)} sub=${f.pct(tot.error_rate) + " of requests"} testid="kpi-errors" />
      <${Card} label="Latency p50 / p99" value=${f.ms(tot.latency_p50)} sub=${"p99 " + f.ms(tot.latency_p99)} testid="kpi-latency" />
      <${Card} label="Time to first token p50" value=${f.ms(tot.ttft_p50)} sub=${"p99 " + f.ms(tot.ttft_p99)} testid="kpi-ttft" />
      <${Card} label="Tokens in / out" value=${f.compact(tot.input_tokens + tot.output_tokens)}
        sub=${f.compact(tot.input_tokens) + " in · " + f.compact(tot.output_tokens) + " out"} testid="kpi-tokens" />
      <${Card} label="Spend" value=${f.usd(tot.cost)} testid="kpi-spend" />
    </div>` : null}
    ${charts ? html`<div class="grid2">
      <${TimeChart} title="Requests and errors" t=${t} series=${charts.requests} fmt=${f.compact} testid="chart-requests" />
      <${TimeChart} title="Spend (USD)" t=${t} series=${charts.cost} fmt=${f.usd} testid="chart-spend" />
      <${TimeChart} title="Latency" t=${t} series=${charts.latency} fmt=${f.ms} testid="chart-latency" />
      <${TimeChart} title="Time to first token (streams)" t=${t} series=${charts.ttft} fmt=${f.ms} testid="chart-ttft" />
      <${TimeChart} title="Tokens" t=${t} series=${charts.tokens} fmt=${f.compact} testid="chart-tokens" />
    </div>` : null}
    ${br.data ? html`<div class="grid2">
      <${Breakdown} rows=${br.data.model} dim="model" title="By model" />
      <${Breakdown} rows=${br.data.key} dim="key" title="By key" names=${keyName} />
    </div>` : null}
  </div>`;
}
