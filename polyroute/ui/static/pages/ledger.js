// Ledger: the request log, newest first, filtered and paginated on the server (keyset cursors);
// one request's attempts in detail (#/ledger?id=req_...).
import { html, useState } from "../lib/html.js";
import { useApi, ErrorBox, Select, PERIODS, Badge, DimensionFilters, routeParams, setRouteParams } from "../lib/ui.js";
import * as f from "../lib/format.js";

function statusBadge(s) {
  return html`<${Badge} value=${String(s)} tone=${s < 400 ? "b-ok" : s === 429 ? "b-warn" : "b-bad"} />`;
}

function Detail({ id, keyName }) {
  const { data, error } = useApi("ledger/request", { id });
  const back = () => history.back();
  if (error) return html`<div><button onClick=${back}>← back</button><${ErrorBox} error=${error} /></div>`;
  if (!data) return html`<p class="muted">Loading…</p>`;
  const fields = [
    ["request id", html`<span class="mono" data-testid="detail-id">${data.request_id}</span>`],
    ["time", f.time(data.ts)],
    ["status", html`${statusBadge(data.status)} ${data.error_class || ""} ${data.error_message || ""}`],
    ["key", keyName(data.key_id)],
    ["API", data.api], ["model asked", data.model_asked], ["route", data.route],
    ["served by", data.deployment ? html`<span class="mono">${data.deployment}</span> (${data.vendor})` : "–"],
    ["latency", f.ms(data.latency_ms)], ["time to first token", f.ms(data.ttft_ms)],
    ["tokens", `${f.int(data.input_tokens)} in (cached ${f.int(data.cached_tokens)}, cache writes ${f.int(data.cache_write_tokens)}) · ${f.int(data.output_tokens)} out (reasoning ${f.int(data.reasoning_tokens)})${data.estimated ? " · estimated" : ""}`],
    ["cost", f.usd(data.cost)], ["stream", data.stream ? "yes" : "no"],
    ["tags", data.tags ? data.tags.join(", ") : "–"], ["end user", data.end_user || "–"],
  ];
  return html`<div data-testid="ledger-detail">
    <div class="row"><button onClick=${back}>← back</button><h1>Request</h1></div>
    <div class="panel"><dl class="detail">${fields.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl></div>
    <div class="panel"><h2>Attempts (${data.attempt_rows.length})</h2><div class="table-wrap"><table data-testid="attempts-table">
      <thead><tr><th>#</th><th>deployment</th><th>provider</th><th>vendor</th><th>status</th><th>error</th>
        <th class="num">latency</th><th class="num">tokens in / out</th><th class="num">cost</th></tr></thead>
      <tbody>${data.attempt_rows.map((a) => html`<tr>
        <td>${a.n + 1}</td><td class="mono">${a.deployment}</td><td>${a.provider}</td><td>${a.vendor}</td>
        <td>${statusBadge(a.status)}</td><td class="muted">${a.error || ""}</td><td class="num">${f.ms(a.latency_ms)}</td>
        <td class="num">${f.int(a.input_tokens)} / ${f.int(a.output_tokens)}</td><td class="num">${f.usd(a.cost)}</td></tr>`)}
      ${data.attempt_rows.length === 0 ? html`<tr><td colspan="9" class="muted">No upstream attempt (refused by governance before routing).</td></tr>` : null}
      </tbody></table></div></div>
    ${data.prompt ? html`<div class="panel"><h2>Prompt</h2><pre class="answer">${data.prompt}</pre></div>` : null}
    ${data.response ? html`<div class="panel"><h2>Response</h2><pre class="answer">${data.response}</pre></div>` : null}
  </div>`;
}

export function Ledger({ filters }) {
  const params = routeParams();
  const [q, setQ] = useState(() => {
    const { id, ...rest } = params;
    return { since: "24h", ...rest };
  });
  const [cursors, setCursors] = useState([""]);
  const cursor = cursors[cursors.length - 1];
  const [search, setSearch] = useState(q.request_id || "");
  const { data, error, loading } = useApi("ledger", { ...q, cursor, limit: 50 }, cursors.length === 1 ? 15 : 0);
  const keyName = (id) => {
    if (!id) return "–";
    const k = filters && filters.keys.find((x) => x.id === id);
    return k ? `${k.name || "(unnamed)"} · ${k.prefix}` : id;
  };
  if (params.id) return html`<${Detail} id=${params.id} keyName=${keyName} />`;
  const update = (next) => {
    setQ(next);
    setCursors([""]);
    setRouteParams("ledger", next);
  };
  return html`<div>
    <h1>Ledger</h1>
    <div class="filters">
      <${Select} label="Period" value=${q.since} options=${PERIODS} testid="f-period" onChange=${(v) => update({ ...q, since: v })} />
      <${DimensionFilters} filters=${filters} value=${q} onChange=${update} />
      <${Select} label="Status" value=${q.status} empty="any" testid="f-status" onChange=${(v) => update({ ...q, status: v })}
        options=${[["ok", "successful"], ["error", "errors"]]} />
      <form class="row" onSubmit=${(e) => { e.preventDefault(); update({ ...q, request_id: search.trim() }); }}>
        <label>Request id <input value=${search} placeholder="req_…" onInput=${(e) => setSearch(e.target.value)} data-testid="f-request-id" /></label>
        <button type="submit">Find</button></form>
    </div>
    <${ErrorBox} error=${error} />
    <div class="panel"><div class="table-wrap"><table data-testid="ledger-table">
      <thead><tr><th>time</th><th>request</th><th>key</th><th>model</th><th>served by</th><th>status</th>
        <th class="num">attempts</th><th class="num">tokens in / out</th><th class="num">cost</th><th class="num">latency</th><th class="num">TTFT</th></tr></thead>
      <tbody>${(data ? data.rows : []).map((r) => html`<tr class="click" data-testid="ledger-row" data-request-id=${r.request_id}
          onClick=${() => { location.hash = `#/ledger?id=${encodeURIComponent(r.request_id)}`; }}>
        <td class="muted nowrap">${f.time(r.ts)}</td><td class="mono">${r.request_id}</td><td>${keyName(r.key_id)}</td>
        <td>${r.model_asked}</td><td class="mono">${r.deployment || "–"}</td><td>${statusBadge(r.status)}</td>
        <td class="num">${r.attempts}</td><td class="num">${f.int(r.input_tokens)} / ${f.int(r.output_tokens)}</td>
        <td class="num">${f.usd(r.cost)}</td><td class="num">${f.ms(r.latency_ms)}</td><td class="num">${f.ms(r.ttft_ms)}</td></tr>`)}
      ${data && data.rows.length === 0 ? html`<tr><td colspan="11" class="muted">No requests match.</td></tr>` : null}
      </tbody></table></div>
      <div class="pager">
        <button disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))} data-testid="page-prev">← newer</button>
        <span class="muted">page ${cursors.length}${loading ? " · loading…" : ""}</span>
        <button disabled=${!data || !data.next} onClick=${() => setCursors([...cursors, data.next])} data-testid="page-next">older →</button>
      </div></div>
  </div>`;
}
