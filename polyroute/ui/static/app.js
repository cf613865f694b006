// The dashboard shell: session, navigation (hash routes: #/overview, #/ledger?id=...), pages.
import { html, render, useEffect, useState } from "./lib/html.js";
import { get, post, setCsrf } from "./lib/api.js";
import { Overview } from "./pages/overview.js";
import { Vendors } from "./pages/vendors.js";
import { Routes } from "./pages/routes.js";
import { Keys } from "./pages/keys.js";
import { Ledger } from "./pages/ledger.js";
import { Compare } from "./pages/compare.js";

const PAGES = [
  ["overview", "Overview", Overview],
  ["vendors", "Vendors", Vendors],
  ["routes", "Routes", Routes],
  ["keys", "Keys & teams", Keys],
  ["ledger", "Ledger", Ledger],
  ["compare", "Compare", Compare],
];

function pageOf(hash) {
  const m = hash.match(/^#\/([a-z]+)/);
  return m && PAGES.some(([id]) => id === m[1]) ? m[1] : "overview";
}

function App() {
  const [session, setSession] = useState(null);
  const [filters, setFilters] = useState(null);
  const [hash, setHash] = useState(location.hash);
  const loadFilters = () => get("filters").then(setFilters, () => setFilters(null));

  useEffect(() => {
    get("session").then((s) => {
      setCsrf(s.csrf);
      setSession(s);
    });
    loadFilters();
    const on = () => setHash(location.hash);
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);

  if (!session) return html`<p class="boot">Loading…</p>`;
  const page = pageOf(hash);
  const Page = PAGES.find(([id]) => id === page)[2];
  const logout = async () => {
    try {
      await post("logout");
    } finally {
      location.assign("/ui/login");
    }
  };
  return html`<div class="shell">
    <aside class="side">
      <div class="brand"><span class="logo">◆</span> polyroute</div>
      <nav>
        ${PAGES.map(([id, label]) => html`<a href="#/${id}" class=${id === page ? "active" : ""} data-testid="nav-${id}">${label}</a>`)}
      </nav>
      <div class="who">
        <div>Signed in with the <span data-testid="who">${session.label}</span></div>
        <button onClick=${logout} data-testid="logout">Sign out</button>
      </div>
    </aside>
    <main class="main">
      <${Page} key=${page} hash=${hash} session=${session} filters=${filters} reloadFilters=${loadFilters} />
    </main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
