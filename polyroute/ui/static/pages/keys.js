// Keys and teams: create (the secret is shown once), revoke, limits and budgets, spend against budget.
import { html, useState } from "../lib/html.js";
import { post } from "../lib/api.js";
import { useApi, ErrorBox, Badge } from "../lib/ui.js";
import * as f from "../lib/format.js";


function limitsFrom(form) {
  const out = {};
  const num = (v, whole) => (v === "" ? null : whole ? parseInt(v, 10) : parseFloat(v));
  out.budget_daily = num(form.budget_daily, false);
  out.budget_monthly = num(form.budget_monthly, false);
  out.rpm = num(form.rpm, true);
  out.tpm = num(form.tpm, true);
  out.budget_mode = form.budget_mode || "hard";
  const models = (form.allowed_models || "").split(",").map((s) => s.trim()).filter(Boolean);
  out.allowed_models = models.length ? models : null;
  return out;
}

function formFrom(rec) {
  const v = (x) => (x === null || x === undefined ? "" : String(x));
  return {
    budget_daily: v(rec.budget_daily), budget_monthly: v(rec.budget_monthly), budget_mode: rec.budget_mode || "hard",
    rpm: v(rec.rpm), tpm: v(rec.tpm), allowed_models: (rec.allowed_models || []).join(", "),
  };
}

function LimitFields({ form, set, prefix }) {
  const input = (name, label, type = "number", placeholder = "no limit") => html`<label>${label}
    <input type=${type} step="any" min="0" value=${form[name]} placeholder=${placeholder} data-testid="${prefix}-${name}"
      onInput=${(e) => set({ ...form, [name]: e.target.value })} /></label>`;
  return html`
    ${input("budget_daily", "Daily budget (USD)")}
    ${input("budget_monthly", "Monthly budget (USD)")}
    <label>Over budget
      <select value=${form.budget_mode} onChange=${(e) => set({ ...form, budget_mode: e.target.value })} data-testid="${prefix}-budget_mode">
        <option value="hard">refuse (hard)</option><option value="alert">serve and alert</option>
      </select></label>
    ${input("rpm", "Requests / min")}
    ${input("tpm", "Tokens / min")}
    ${input("allowed_models", "Allowed models (comma-separated, globs)", "text", "every model")}`;
}

function Spend({ spent, budget, status, period }) {
  const counted = status ? status[`spent_${period}`] + status[`reserved_${period}`] : null;
  if (budget === null || budget === undefined) return html`<span>${f.usd(spent)}</span>`;
  const used = counted !== null ? Math.max(counted, spent) : spent;
  const share = budget > 0 ? used / budget : 1;
  return html`<div>${f.usd(used)} / ${f.usd(budget)}
    <div class="bar ${share >= 1 ? "over" : share >= 0.8 ? "near" : ""}"><span class="fill-${Math.min(100, Math.round(share * 10) * 10)}"></span></div></div>`;
}

function keyStatus(k) {
  if (k.revoked_at) return "revoked";
  if (k.expires_at && k.expires_at * 1000 < Date.now()) return "expired";
  return "active";
}

function limitText(r) {
  const parts = [];
  if (r.allowed_models) parts.push("models: " + r.allowed_models.join(", "));
  if (r.rpm) parts.push(`${r.rpm} req/min`);
  if (r.tpm) parts.push(`${f.int(r.tpm)} tok/min`);
  if (r.budget_daily !== null || r.budget_monthly !== null) {
    parts.push(r.budget_mode === "alert" ? "over budget: alert only" : "over budget: refused");
  }
  return parts.length ? parts.join(" · ") : "no limits";
}

function EditLimits({ record, kind, onDone }) {
  const [form, setForm] = useState(formFrom(record));
  const [error, setError] = useState(null);
  const save = async () => {
    try {
      await post(`${kind}/update`, { id: record.id, ...limitsFrom(form) });
      onDone(true);
    } catch (e) {
      setError(e);
    }
  };
  return html`<div class="panel"><h2>Limits of ${kind === "keys" ? "key" : "team"} ${record.name || record.prefix}</h2>
    <${ErrorBox} error=${error} />
    <div class="form"><${LimitFields} form=${form} set=${setForm} prefix="edit" />
      <div class="row"><button class="primary" onClick=${save} data-testid="edit-save">Save</button>
        <button onClick=${() => onDone(false)}>Cancel</button></div></div></div>`;
}

function CreateKey({ teams, onCreated }) {
  const [form, setForm] = useState({ team: "default", name: "", expires: "", ...formFrom({}) });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { team: form.team, name: form.name, ...limitsFrom(form) };
      if (form.expires) body.expires_in_days = parseFloat(form.expires);
      onCreated(await post("keys/create", body));
      setForm({ ...form, name: "" });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const names = teams.map((t) => t.name);
  if (!names.includes("default")) names.unshift("default");
  return html`<form class="panel" onSubmit=${submit}><h2>Create a key</h2>
    <${ErrorBox} error=${error} />
    <div class="form">
      <label>Team <select value=${form.team} onChange=${(e) => setForm({ ...form, team: e.target.value })} data-testid="new-key-team">
        ${names.map((n) => html`<option value=${n}>${n}</option>`)}</select></label>
      <label>Name <input value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })} placeholder="e.g. ci-bot" data-testid="new-key-name" /></label>
      <label>Expires in (days) <input type="number" min="0" step="any" value=${form.expires} placeholder="never"
        onInput=${(e) => setForm({ ...form, expires: e.target.value })} /></label>
      <${LimitFields} form=${form} set=${setForm} prefix="new-key" />
      <div><button class="primary" type="submit" disabled=${busy} data-testid="new-key-submit">Create key</button></div>
    </div></form>`;
}

function CreateTeam({ onCreated }) {
  const [form, setForm] = useState({ name: "", ...formFrom({}) });
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      await post("teams/create", { name: form.name, ...limitsFrom(form) });
      setForm({ name: "", ...formFrom({}) });
      onCreated();
    } catch (e) {
      setError(e);
    }
  };
  return html`<form class="panel" onSubmit=${submit}><h2>Create a team</h2>
    <${ErrorBox} error=${error} />
    <div class="form">
      <label>Name <input required value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })} data-testid="new-team-name" /></label>
      <${LimitFields} form=${form} set=${setForm} prefix="new-team" />
      <div><button class="primary" type="submit" data-testid="new-team-submit">Create team</button></div>
    </div></form>`;
}

export function Keys({ reloadFilters }) {
  const [showRevoked, setShowRevoked] = useState(false);
  const { data, error, reload } = useApi("keys", { revoked: showRevoked ? "1" : "" }, 30);
  const [created, setCreated] = useState(null);
  const [editing, setEditing] = useState(null);
  const [actionError, setActionError] = useState(null);
  const changed = () => {
    reload();
    reloadFilters();
  };
  const revoke = async (k) => {
    if (!window.confirm(`Revoke key ${k.name || ""} (${k.prefix})? Requests with it are refused at once.`)) return;
    try {
      await post("keys/revoke", { id: k.id });
      changed();
    } catch (e) {
      setActionError(e);
    }
  };
  return html`<div>
    <h1>Keys and teams</h1>
    <${ErrorBox} error=${error || actionError} />
    ${created ? html`<div class="secret" data-testid="new-key-box">
      <b>Key ${created.name || ""} created in team ${created.team_name}.</b> Copy it now: it is shown only this once.
      <code data-testid="new-key-secret">${created.key}</code>
      <div class="row"><button onClick=${() => navigator.clipboard && navigator.clipboard.writeText(created.key)}>Copy</button>
        <button onClick=${() => setCreated(null)} data-testid="new-key-dismiss">I have saved it</button></div></div>` : null}
    ${editing ? html`<${EditLimits} record=${editing.record} kind=${editing.kind}
      onDone=${(saved) => { setEditing(null); if (saved) changed(); }} />` : null}
    ${data ? html`<${CreateKey} teams=${data.teams} onCreated=${(k) => { setCreated(k); changed(); }} />` : null}
    ${data ? html`<div class="panel"><div class="row"><h2>Keys</h2><span class="spacer"></span>
      <label class="row muted"><input type="checkbox" checked=${showRevoked} onChange=${(e) => setShowRevoked(e.target.checked)} data-testid="show-revoked" /> show revoked</label></div>
      <div class="table-wrap"><table data-testid="keys-table">
      <thead><tr><th>key</th><th>team</th><th>status</th><th>limits</th><th>today</th><th>this month</th><th class="num">requests (month)</th><th>created</th><th></th></tr></thead>
      <tbody>${data.keys.map((k) => html`<tr data-testid="key-row" data-prefix=${k.prefix}>
        <td><b>${k.name || "(unnamed)"}</b> <span class="mono muted">${k.prefix}</span> ${k.admin ? html`<${Badge} value="admin" tone="b-info" />` : null}</td>
        <td>${k.team_name}</td>
        <td><${Badge} value=${keyStatus(k)} testid="key-status" /></td>
        <td class="muted">${limitText(k)}</td>
        <td><${Spend} spent=${k.spend_today} budget=${k.budget_daily} status=${k.budget_status} period="day" /></td>
        <td><${Spend} spent=${k.spend_month} budget=${k.budget_monthly} status=${k.budget_status} period="month" /></td>
        <td class="num">${f.int(k.requests_month)}</td>
        <td class="muted nowrap">${f.ago(k.created_at)}</td>
        <td>${keyStatus(k) === "active" ? html`<div class="actions">
          <button onClick=${() => setEditing({ kind: "keys", record: k })} data-testid="key-edit">Limits</button>
          <button class="danger" onClick=${() => revoke(k)} data-testid="key-revoke">Revoke</button></div>` : null}</td>
      </tr>`)}
      ${data.keys.length === 0 ? html`<tr><td colspan="9" class="muted">No keys yet.</td></tr>` : null}
      </tbody></table></div></div>
    <div class="panel"><h2>Teams</h2><p class="muted">Keys of ${data.admin_teams.join(", ")} may sign in here.</p>
      <div class="table-wrap"><table data-testid="teams-table">
      <thead><tr><th>team</th><th class="num">keys</th><th>limits</th><th>today</th><th>this month</th><th></th></tr></thead>
      <tbody>${data.teams.map((t) => html`<tr>
        <td><b>${t.name}</b></td><td class="num">${t.keys}</td><td class="muted">${limitText(t)}</td>
        <td><${Spend} spent=${t.spend_today} budget=${t.budget_daily} status=${t.budget_status} period="day" /></td>
        <td><${Spend} spent=${t.spend_month} budget=${t.budget_monthly} status=${t.budget_status} period="month" /></td>
        <td><button onClick=${() => setEditing({ kind: "teams", record: t })}>Limits</button></td></tr>`)}
      </tbody></table></div></div>
    <${CreateTeam} onCreated=${changed} />` : null}
  </div>`;
}
