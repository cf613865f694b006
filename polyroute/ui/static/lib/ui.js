// Small shared pieces: data loading, badges, filter controls, hash-route parameters.
import { html, useEffect, useState, useCallback } from "./html.js";
import { get } from "./api.js";

// Load `path` with `params`; reload when they change, and every `every` seconds if given.
export function useApi(path, params, every) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const key = JSON.stringify([path, params]);
  const load = useCallback(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    get(path, params).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [key]);
  useEffect(() => {
    const stop = load();
    if (!every) return stop;
    const id = setInterval(load, every * 1000);
    return () => {
      stop();
      clearInterval(id);
    };
  }, [load, every]);
  return { ...state, reload: load };
}

const TONES = {
  healthy: "b-ok", closed: "b-ok", active: "b-ok", ok: "b-ok",
  degraded: "b-warn", recovering: "b-warn", half_open: "b-warn", untested: "b-none", none: "b-none",
  failing: "b-bad", down: "b-bad", open: "b-bad", unhealthy: "b-bad", revoked: "b-bad", expired: "b-bad", error: "b-bad",
};

export function Badge({ value, tone, testid }) {
  return html`<span class="badge ${tone || TONES[value] || "b-info"}" data-testid=${testid}>${String(value).replace("_", "-")}</span>`;
}

export function ErrorBox({ error }) {
  return error ? html`<div class="err-box" role="alert">${error.message || String(error)}</div>` : null;
}

export const PERIODS = [
  ["1h", "last hour"], ["6h", "last 6 hours"], ["24h", "last 24 hours"],
  ["7d", "last 7 days"], ["30d", "last 30 days"], ["90d", "last 90 days"],
];

export function Select({ label, value, options, onChange, testid, empty }) {
  return html`<label>${label}
    <select value=${value || ""} onChange=${(e) => onChange(e.target.value)} data-testid=${testid}>
      ${empty !== undefined ? html`<option value="">${empty}</option>` : null}
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select></label>`;
}

// The query part of the hash route: "#/ledger?key=..." -> {key: ...}
export function routeParams() {
  const i = location.hash.indexOf("?");
  return Object.fromEntries(new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : ""));
}

export function setRouteParams(page, params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) p.set(k, v);
  const s = p.toString();
  history.replaceState(null, "", `#/${page}${s ? "?" + s : ""}`);
}

// Filter controls shared by Overview and Ledger: team, key, model, provider.
export function DimensionFilters({ filters, value, onChange }) {
  if (!filters) return null;
  const set = (k) => (v) => onChange({ ...value, [k]: v });
  const keys = filters.keys.filter((k) => !value.team || k.team_id === value.team);
  return html`
    <${Select} label="Team" value=${value.team} empty="all teams" testid="f-team" onChange=${set("team")}
      options=${filters.teams.map((t) => [t.id, t.name])} />
    <${Select} label="Key" value=${value.key} empty="all keys" testid="f-key" onChange=${set("key")}
      options=${keys.map((k) => [k.id, `${k.name || "(unnamed)"} · ${k.prefix}${k.revoked ? " (revoked)" : ""}`])} />
    <${Select} label="Model" value=${value.model} empty="all models" testid="f-model" onChange=${set("model")}
      options=${filters.models.map((m) => [m, m])} />
    <${Select} label="Provider" value=${value.provider} empty="all providers" testid="f-provider" onChange=${set("provider")}
      options=${filters.providers.map((p) => [p, p])} />`;
}
