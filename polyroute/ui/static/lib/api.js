// Calls to /ui/api/...: the session cookie goes by itself; writes carry the CSRF token.
let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

async function handle(r) {
  if (r.status === 401) {
    location.assign("/ui/login");
    throw new ApiError("signed out", 401, "unauthenticated");
  }
  let body = null;
  try {
    body = await r.json();
  } catch (_) { /* empty or not JSON */ }
  if (!r.ok) {
    const err = (body && body.error) || {};
    throw new ApiError(err.message || `request failed (${r.status})`, r.status, err.code);
  }
  return body;
}

export async function get(path, params) {
  const r = await fetch(`/ui/api/${path}${qs(params)}`, {
    credentials: "same-origin",
    headers: { accept: "application/json" },
  });
  return handle(r);
}

export async function post(path, body) {
  const r = await fetch(`/ui/api/${path}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-polyroute-csrf": csrf || "" },
    body: JSON.stringify(body || {}),
  });
  return handle(r);
}
