// Routes: each public model's deployments, strategy, live health, circuit breaker and capacity.
import { html } from "../lib/html.js";
import { useApi, ErrorBox, Badge } from "../lib/ui.js";
import * as f from "../lib/format.js";

function Used({ used, limit, unit }) {
  if (!limit) return html`<span>${f.int(used)} <span class="muted">${unit} (no limit)</span></span>`;
  const share = used / limit;
  return html`<div>${f.int(used)} / ${f.int(limit)} <span class="muted">${unit}</span>
    <div class="bar ${share >= 1 ? "over" : share >= 0.8 ? "near" : ""}"><span class="fill-${Math.min(100, Math.round(share * 10) * 10)}"></span></div></div>`;
}

function Deployment({ d }) {
  const c = d.capacity;
  const b = d.breaker;
  return html`<tr data-testid="deployment-row">
    <td><div class="mono">${d.id}</div><div class="muted">${d.provider} → ${d.upstream_model}</div></td>
    <td class="mono">${d.vendor}</td>
    <td><${Badge} value=${d.status} testid="dep-status" /></td>
    <td><${Badge} value=${b.state} testid="dep-breaker" />
      ${b.retry_in > 0 ? html`<div class="muted">probe in ${b.retry_in.toFixed(1)} s</div>` : null}
      ${b.opened ? html`<div class="muted">opened ${b.opened}×</div>` : null}</td>
    <td class="num">${f.ms(d.latency_ms)}<div class="muted">TTFT ${f.ms(d.ttft_ms)}</div></td>
    <td class="num">${f.int(d.recent.ok)} / ${f.int(d.recent.attempts)}</td>
    <td><${Used} used=${c.inflight} limit=${c.max_concurrency} unit="in flight" /></td>
    <td><${Used} used=${c.requests_last_minute} limit=${c.rpm} unit="req/min" /></td>
    <td><${Used} used=${c.tokens_last_minute} limit=${c.tpm} unit="tok/min" /></td>
    <td>${c.full ? html`<${Badge} value="full" tone="b-bad" />` : c.wait > 0 ? html`<${Badge} value=${"wait " + c.wait.toFixed(1) + " s"} tone="b-warn" />` : html`<${Badge} value="ok" />`}</td>
    <td class="num">${d.weight}</td>
    <td class="num">${d.input_price === null ? "–" : "$" + d.input_price + " / $" + d.output_price}</td>
  </tr>`;
}

export function Routes() {
  const { data, error } = useApi("routes", {}, 5);
  return html`<div>
    <h1>Routes</h1>
    <p class="muted">Live state of this gateway process, refreshed every 5 s. Health: the circuit breaker, and
      the ledger's attempts over the last ${data ? f.span(data.health_window) : "5 min"}; usage per minute from the ledger.</p>
    <${ErrorBox} error=${error} />
    ${data ? data.routes.map((r) => html`<div class="panel route" data-testid="route-${r.name}">
      <h2>${r.name} <${Badge} value=${r.kind} tone="b-info" /> ${r.weak ? html`<${Badge} value="in-house" tone="b-none" />` : null}</h2>
      <div class="kv">
        <span>strategy <b>${r.strategy}</b></span>
        <span>fallbacks <b>${r.fallbacks.length ? r.fallbacks.join(" → ") : "none"}</b></span>
        <span>retries <b>${r.retries}</b></span>
        <span>timeout <b>${r.timeout ? r.timeout + " s" : "per provider"}</b></span>
        ${r.sticky ? html`<span>sticky by <b>${r.sticky}</b></span>` : null}
        ${r.allow_weak_fallback ? html`<span><b>weak fallback allowed</b></span>` : null}
        ${r.shadow ? html`<span>shadow <b>${r.shadow.join(", ")}</b></span>` : null}
      </div>
      ${r.description ? html`<p class="muted">${r.description}</p>` : null}
      <div class="table-wrap"><table>
        <thead><tr><th>deployment</th><th>vendor</th><th>health now</th><th>breaker</th><th class="num">latency (avg)</th>
          <th class="num">ok / attempts</th><th>concurrency</th><th>requests</th><th>tokens</th><th>capacity</th>
          <th class="num">weight</th><th class="num">$/M in / out</th></tr></thead>
        <tbody>${r.deployments.map((d) => html`<${Deployment} d=${d} />`)}</tbody>
      </table></div>
    </div>`) : null}
  </div>`;
}
