// Compare: `polyroute compare` reports from the configured folder, and the side-by-side playground
// whose votes become routing records.
import { html, useState } from "../lib/html.js";
import { post } from "../lib/api.js";
import { useApi, ErrorBox, routeParams } from "../lib/ui.js";
import * as f from "../lib/format.js";

function Report({ name }) {
  const { data, error } = useApi("compare/report", { name });
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data) return html`<p class="muted">Loading…</p>`;
  const models = data.summary && data.summary.models ? Object.values(data.summary.models) : [];
  return html`<div data-testid="report-detail">
    <div class="row"><a href="#/compare">← all reports</a></div>
    <h1>${name}</h1>
    <div class="panel"><h2>Models</h2><div class="table-wrap"><table>
      <thead><tr><th>model</th><th class="num">answers</th><th class="num">errors</th><th class="num">mean quality</th>
        <th class="num">win rate</th><th class="num">total cost</th><th class="num">p50 latency</th><th class="num">p50 TTFT</th></tr></thead>
      <tbody>${models.map((m) => html`<tr><td><b>${m.model}</b></td><td class="num">${m.answers}</td><td class="num">${m.errors}</td>
        <td class="num">${m.mean_quality === null ? "–" : m.mean_quality.toFixed(3)}</td><td class="num">${f.pct(m.win_rate)}</td>
        <td class="num">${f.usd(m.total_cost_usd)}</td><td class="num">${f.ms(m.latency_p50_ms)}</td><td class="num">${f.ms(m.ttft_p50_ms)}</td></tr>`)}
      </tbody></table></div>
      <p class="muted">${data.results ?? 0} answers in results.jsonl · ${data.routing_records ?? 0} routing records in routing.jsonl</p></div>
    ${data.files["report.html"] ? html`<iframe class="report" sandbox="" title="report" src=${"/ui/compare/report?name=" + encodeURIComponent(name)}></iframe>` : null}
  </div>`;
}

function Reports() {
  const { data, error } = useApi("compare/reports", {});
  return html`<div class="panel"><h2>Reports</h2>
    <${ErrorBox} error=${error} />
    ${data ? html`<p class="muted">Folders with a summary.json in <code>${data.folder}</code> (written by <code>polyroute compare --out</code>).</p>
    <div class="table-wrap"><table data-testid="reports-table"><thead><tr><th>report</th><th>models</th><th class="num">routing records</th><th>written</th></tr></thead>
      <tbody>${data.reports.map((r) => html`<tr class="click" onClick=${() => { location.hash = "#/compare?report=" + encodeURIComponent(r.name); }}>
        <td><a href=${"#/compare?report=" + encodeURIComponent(r.name)}>${r.name}</a></td><td>${r.models.join(", ")}</td>
        <td class="num">${r.routing_records ?? "–"}</td><td class="muted">${f.ago(r.modified)}</td></tr>`)}
      ${data.reports.length === 0 ? html`<tr><td colspan="4" class="muted">No reports yet.</td></tr>` : null}
      </tbody></table></div>` : null}
  </div>`;
}

function Playground() {
  const { data: models } = useApi("playground/models", {});
  const [prompt, setPrompt] = useState("");
  const [pick, setPick] = useState(["", ""]);
  const [maxTokens, setMaxTokens] = useState(512);
  const [match, setMatch] = useState(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    setResult(null);
    setMatch(null);
    try {
      const body = { prompt, max_tokens: Number(maxTokens) };
      if (pick[0] && pick[1]) body.models = pick;
      setMatch({ ...(await post("playground/run", body)), prompt });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const vote = async (winner) => {
    setError(null);
    try {
      setResult(await post("playground/vote", { token: match.token, prompt: match.prompt, winner }));
    } catch (e) {
      setError(e);
    }
  };
  const names = result ? result.models : match && match.models;
  const opts = models ? models.models : [];
  return html`<div class="panel" data-testid="playground"><h2>Side by side</h2>
    <p class="muted">The same prompt goes to two models; their names stay hidden until you vote. Each vote is appended
      to <code>${models ? models.preferences : "…"}</code> as a routing record for <code>polyroute router train</code>.</p>
    <form onSubmit=${run}>
      <textarea rows="4" value=${prompt} onInput=${(e) => setPrompt(e.target.value)} placeholder="Ask something…" required data-testid="pg-prompt"></textarea>
      <div class="filters">
        ${[0, 1].map((i) => html`<label>Model ${i === 0 ? "1" : "2"}
          <select value=${pick[i]} onChange=${(e) => { const p = [...pick]; p[i] = e.target.value; setPick(p); }} data-testid="pg-model-${i}">
            <option value="">random</option>${opts.map((m) => html`<option value=${m}>${m}</option>`)}</select></label>`)}
        <label>Max tokens <input type="number" min="1" max="8192" value=${maxTokens} onInput=${(e) => setMaxTokens(e.target.value)} /></label>
        <button class="primary" type="submit" disabled=${busy} data-testid="pg-run">${busy ? "Asking…" : "Ask both"}</button>
      </div>
    </form>
    <${ErrorBox} error=${error} />
    ${match ? html`<div class="duel">${match.answers.map((a) => html`<div data-testid="pg-answer-${a.label}">
        <h3>Answer ${a.label}${names ? html` · <span data-testid="pg-name-${a.label}">${names[a.label]}</span>` : null}</h3>
        ${a.error ? html`<div class="err-box">${a.error}</div>` : html`<div class="answer">${a.text}</div>`}
        <div class="muted">${f.ms(a.latency_ms)}</div></div>`)}</div>
      ${match.token && !result ? html`<div class="votes">
        <button onClick=${() => vote("A")} data-testid="vote-A">A is better</button>
        <button onClick=${() => vote("tie")} data-testid="vote-tie">Tie</button>
        <button onClick=${() => vote("B")} data-testid="vote-B">B is better</button>
        <button onClick=${() => vote("both_bad")} data-testid="vote-both_bad">Both are bad</button></div>` : null}
      ${result ? html`<div class="notice" data-testid="pg-result">Vote recorded: ${Object.entries(result.record.scores).map(([m, s]) => `${m} ${s}`).join(" · ")}</div>` : null}` : null}
  </div>`;
}

export function Compare() {
  const { report } = routeParams();
  if (report) return html`<${Report} name=${report} />`;
  return html`<div><h1>Compare</h1><${Playground} /><${Reports} /></div>`;
}
