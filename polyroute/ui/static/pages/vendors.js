// Vendors: share of traffic and spend per vendor over time, and each model's fallback coverage.
import { html, useMemo, useState } from "../lib/html.js";
import { useApi, ErrorBox, Select, PERIODS, Badge, routeParams, setRouteParams } from "../lib/ui.js";
import { TimeChart } from "../lib/chart.js";
import * as f from "../lib/format.js";

function Coverage({ c }) {
  if (!c.available) return html`<${Badge} value="none" />`;
  return html`<div><${Badge} value=${c.now} />
    <div class="muted options">${c.options.map((o) => html`<div>
      <span class="mono">${o.vendor}</span> via ${o.model} <${Badge} value=${o.status} /></div>`)}</div></div>`;
}

export function Vendors() {
  const [q, setQ] = useState(() => ({ since: "7d", ...routeParams() }));
  const { data, error } = useApi("vendors", q, 30);
  const charts = useMemo(() => {
    if (!data) return null;
    const shares = data.vendors.map((v) => ({
      label: v,
      values: data.requests[v].map((n, i) => {
        const total = data.vendors.reduce((a, w) => a + data.requests[w][i], 0);
        return total ? n / total : null;
      }),
    }));
    const spend = data.vendors.map((v) => ({ label: v, values: data.cost[v] }));
    return { shares, spend };
  }, [data]);
  return html`<div>
    <h1>Vendors</h1>
    <div class="filters">
      <${Select} label="Period" value=${q.since} options=${PERIODS} testid="f-period"
        onChange=${(v) => { const n = { ...q, since: v }; setQ(n); setRouteParams("vendors", n); }} />
    </div>
    <${ErrorBox} error=${error} />
    ${charts ? html`<div class="grid2">
      <${TimeChart} title="Share of requests served" t=${data.t} series=${charts.shares} stacked=${true} fmt=${(v) => f.pct(v, 0)} testid="chart-vendor-share" />
      <${TimeChart} title="Spend per vendor (all attempts, USD)" t=${data.t} series=${charts.spend} stacked=${true} fmt=${f.usd} testid="chart-vendor-spend" />
    </div>` : null}
    ${data ? html`
    <div class="panel"><h2>Dependency per vendor</h2><div class="table-wrap"><table data-testid="vendor-table">
      <thead><tr><th>vendor</th><th class="num">requests</th><th class="num">share</th><th class="num">tokens</th>
        <th class="num">spend</th><th class="num">spend share</th><th class="num">failed attempts</th>
        <th>if it disappeared: breaks</th><th>at risk now</th></tr></thead>
      <tbody>${data.totals.map((v) => html`<tr>
        <td class="mono">${v.vendor}</td><td class="num">${f.int(v.requests)}</td><td class="num">${f.pct(v.requests_share)}</td>
        <td class="num">${f.compact(v.tokens)}</td><td class="num">${f.usd(v.cost)}</td><td class="num">${f.pct(v.cost_share)}</td>
        <td class="num">${f.int(v.failed_attempts)} / ${f.int(v.attempts)}</td>
        <td>${v.models_broken_if_lost.length ? v.models_broken_if_lost.map((m) => html`<${Badge} value=${m} tone="b-bad" /> `) : html`<span class="muted">nothing</span>`}</td>
        <td>${v.models_at_risk_if_lost.length ? v.models_at_risk_if_lost.map((m) => html`<${Badge} value=${m} tone="b-warn" /> `) : html`<span class="muted">nothing</span>`}</td>
      </tr>`)}</tbody></table></div></div>
    <div class="panel"><h2>Fallback coverage per model</h2>
      <p class="muted">Who can take over each public model: its deployments on other vendors and its fallbacks,
        with their health now (circuit breaker, and ledger attempts over the last ${f.span(data.health_window)}).</p>
      <div class="table-wrap"><table data-testid="coverage-table">
      <thead><tr><th>model</th><th>primary</th><th>another vendor</th><th>in-house model</th><th>fallbacks</th></tr></thead>
      <tbody>${data.models.map((m) => html`<tr>
        <td><b>${m.model}</b> <span class="muted">${m.kind}</span></td>
        <td><span class="mono">${m.primary_vendor}</span> <${Badge} value=${m.primary_status} /></td>
        <td><${Coverage} c=${m.other_vendor} /></td>
        <td><${Coverage} c=${m.inhouse} />${m.inhouse.available && !m.allow_weak_fallback ? html`<div class="muted">(own deployment)</div>` : null}</td>
        <td>${m.fallbacks.length ? m.fallbacks.join(", ") : html`<span class="muted">none</span>`}</td>
      </tr>`)}</tbody></table></div></div>` : null}
  </div>`;
}
