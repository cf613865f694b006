"""The governance policy: authenticate, enforce allow-lists, reserve limits and budgets before the
call; settle and write the ledger row after it. Nothing here waits on the database."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from polyroute.config.schema import Config, DatabaseConfig, GovernanceConfig, LedgerConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy
from polyroute.core.tokens import estimate_prompt, estimate_text
from polyroute.governance.keycache import KeyCache
from polyroute.governance.keys import Key, Limits, Team, hash_key, same_hash
from polyroute.governance.ledger import LedgerWriter, Spool
from polyroute.governance.limits import Counters, MemoryCounters, Reservation, Subject, period_starts, periods
from polyroute.governance.redact import Redactor
from polyroute.governance.store import Store, utc_day
from polyroute.ops.reload import SUPERVISOR_ENV
from polyroute.pricing.table import deployment_price

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway

log = logging.getLogger("polyroute.governance")

# The master key as a principal: no team, no limits.
MASTER = Key(id="master", team_id="", name="master", key_hash="", prefix="master")
_NO_TEAM = Team(id="", name="")
_NO_USAGE = t.Usage()
_GENERIC_TYPES = {"openai_compatible", "vllm", "ollama", "llamacpp"}
RETENTION_EVERY = 6 * 3600.0


def vendor_of_provider(name: str, ptype: str) -> str:
    """The company (or local server) behind a provider: its type, except for generic servers,
    which are only known by the name the config gives them."""
    return name if ptype in _GENERIC_TYPES else ptype


def deployment_id(model_name: str, index: int, provider: str, upstream: str, name: str | None) -> str:
    # Mirrors core.deployment.Deployment.id (used to check what served a request).
    return name or f"{model_name}/{provider}/{upstream}" + (f"#{index}" if index else "")


@dataclass(slots=True)
class _Pending:
    key: Key | None
    reservation: Reservation | None
    prompt: str | None


@dataclass(slots=True)
class _Profile:
    """What one key's requests need checked (model rules, limits), for its current records."""

    key: Key
    team: Team
    rules: bool  # the key or its team has an allow-list
    allowed: frozenset[str]  # the configured models it may use, when `rules`
    subjects: list[Subject]  # its limits and its team's, as the counters take them


class Governance(Policy):
    def __init__(self, cfg: Config, *, counters: Counters | None = None) -> None:
        self.cfg = cfg
        self.gcfg = cfg.governance or GovernanceConfig()
        self.lcfg = cfg.ledger or LedgerConfig()
        dcfg = cfg.database or DatabaseConfig()
        self.store = Store.from_url(dcfg.url, pool_size=dcfg.pool_size, connect_timeout=dcfg.connect_timeout)
        master = cfg.server.master_key
        self.master_hash = hash_key(master) if master else None
        self.keys = KeyCache(self.store, self.gcfg.key_cache_ttl)
        self.counters: Counters = counters or MemoryCounters()
        self.redactor = Redactor(
            self.lcfg.redact, [master, *(p.api_key for p in cfg.providers.values()), *_header_values(cfg)]
        )
        self.ledger: LedgerWriter | None = None
        if self.lcfg.enabled:
            spool_dir = self.lcfg.spool_dir or str(Path("polyroute-spool"))
            self.ledger = LedgerWriter(
                self.store,
                Spool(spool_dir),
                queue_size=self.lcfg.queue_size,
                batch_size=self.lcfg.batch_size,
                flush_interval=self.lcfg.flush_interval,
                write_timeout=self.lcfg.write_timeout,
            )
        self.vendor_of = {n: vendor_of_provider(n, p.type) for n, p in cfg.providers.items()}
        # Per route: the highest per-token input and output price of any of its deployments, so a
        # reservation covers whichever deployment ends up serving.
        self.route_price: dict[str, tuple[float, float]] = {}
        # The same for a model and its fallbacks together (see _index_prices).
        self.asked_price: dict[str, tuple[float, float]] = {}
        self.served_model: dict[str, str] = {}
        for name, mc in cfg.models.items():
            pin = pout = 0.0
            for i, dc in enumerate(mc.deployments):
                price = deployment_price(dc)
                if price is not None:
                    pin = max(pin, price.input, price.cached_input or 0.0, price.cache_write or 0.0)
                    pout = max(pout, price.output)
                self.served_model[deployment_id(name, i, dc.provider, dc.model, dc.name)] = name
            self.route_price[name] = (pin * 1e-6, pout * 1e-6)
        self._index_prices()
        self.hold = max([p.timeouts.total for p in cfg.providers.values()] + [600.0]) + 60.0
        self._pending: dict[str, _Pending] = {}
        # What a key's requests need checked, rebuilt only when its key or team record is replaced.
        self._profiles: dict[str, _Profile] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = False

    # --- life cycle --------------------------------------------------------------------------------

    def attach(self, gateway: Gateway) -> None:
        # Called again after a config reload: everything read from the config is refreshed
        # (models, providers, their secrets); keys, counters and the ledger carry on.
        cfg = gateway.config
        if cfg is not self.cfg:
            self.cfg = cfg
            self.vendor_of = {n: vendor_of_provider(n, p.type) for n, p in cfg.providers.items()}
            self.redactor = Redactor(
                self.lcfg.redact,
                [cfg.server.master_key, *(p.api_key for p in cfg.providers.values()), *_header_values(cfg)],
            )
            self._profiles.clear()
        # The catalogue knows each deployment's resolved id and prices: prefer them to our reading
        # of the config.
        for name, route in gateway.catalog.routes.items():
            pin = pout = 0.0
            for d in route.deployments:
                if d.model_name == name:  # routes over candidates share the candidates' deployments
                    self.served_model[d.id] = name
                pin = max(pin, d.input_price, d.cached_input_price, d.cache_write_price)
                pout = max(pout, d.output_price)
            self.route_price[name] = (pin, pout)
        self._index_prices()

    def _index_prices(self) -> None:
        # Per model asked with no request options: the highest prices over it and its fallbacks,
        # which is what `estimate` needs, found once here rather than on every request.
        self.asked_price = {name: self._highest_price([name, *mc.fallbacks]) for name, mc in self.cfg.models.items()}

    def _highest_price(self, models: list[str]) -> tuple[float, float]:
        """The highest per-token input and output prices over these routes (unknown ones: 0)."""
        pin = pout = 0.0
        for m in models:
            ri, ro = self.route_price.get(m, (0.0, 0.0))
            pin, pout = max(pin, ri), max(pout, ro)
        return pin, pout

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        applied = await self.store.open()
        if applied:
            log.info("governance database %s: applied migrations %s", self.store.db.dialect, applied)
        await self.keys.start()
        if self.ledger is not None:
            await self.ledger.start()  # replays the spool first, so the budgets below count it
        await self._seed_budgets()
        if self.lcfg.retention_days is not None:
            self._spawn(self._retention_loop(self.lcfg.retention_days))
        self.started = True
        if isinstance(self.counters, MemoryCounters):
            # Never silent: with several workers or instances each one would enforce the whole
            # limit on its own share of the traffic (docs/deployment.md).
            several = bool(os.environ.get(SUPERVISOR_ENV))
            (log.warning if several else log.info)(
                "governance: rate limits and budgets are counted in this process only (governance.counters: "
                "memory)%s; set governance.counters: redis and redis_url to share them",
                ": with several workers each one enforces every limit on its own" if several else "",
            )
        if not self.auth_required:
            log.warning(
                "governance: no master key and no virtual keys: the gateway is open to anyone who can reach it"
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.keys.close()
        if self.ledger is not None:
            await self.ledger.close()
        await self.counters.close()
        await self.store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _seed_budgets(self) -> None:
        day_start, month_start = period_starts(time.time())
        spent: dict[tuple[str, str], float] = {}
        for key_id, team_id, day, usd in await self.store.spend_since(month_start):
            month = day[:7]
            for sid in (f"key:{key_id}" if key_id else None, f"team:{team_id}" if team_id else None):
                if sid is None:
                    continue
                spent[(sid, month)] = spent.get((sid, month), 0.0) + usd
                if day == utc_day(day_start):
                    spent[(sid, day)] = spent.get((sid, day), 0.0) + usd
        await self.counters.seed(spent)

    async def _retention_loop(self, days: int) -> None:
        while True:
            try:
                n = await self.store.purge(time.time() - days * 86400.0)
                if n:
                    log.info("ledger retention: deleted %d row(s) older than %d days", n, days)
            except Exception as exc:
                log.warning("ledger retention failed (%s)", type(exc).__name__)
            await asyncio.sleep(RETENTION_EVERY)

    @property
    def auth_required(self) -> bool:
        return self.master_hash is not None or self.gcfg.require_keys or self.keys.any_keys

    # --- before ------------------------------------------------------------------------------------

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        # Every governed request runs this and `after`: kept to few steps (a profile per key
        # says which checks apply), because code here runs cold, between the request's parsing
        # and its upstream call, and costs several times what a tight loop of it measures.
        key = await self._authenticate(ctx)
        pending = _Pending(key, None, None)
        if key is not None:
            ctx.key = key
            if key is not MASTER:
                prof = self._profile(key)
                try:
                    if prof.rules:
                        self._enforce_models(ctx, req, key, prof.allowed)
                    if prof.subjects:
                        pending.reservation = await self._reserve(req, key, prof.subjects)
                except e.GatewayError as err:
                    # `after` does not run for a request refused here: write its row now.
                    ctx.status, ctx.error = err.status, err
                    self._write_row(ctx, pending)
                    raise
        if self.lcfg.store_prompts and isinstance(req, t.ChatRequest):
            pending.prompt = self.redactor.apply(req.prompt_text())
            if ctx.output_text is None:
                ctx.output_text = []  # the gateway collects the answer's text into it
        self._pending[ctx.request_id] = pending

    async def _authenticate(self, ctx: RequestContext) -> Key | None:
        secret = ctx.api_key
        if not secret:
            if self.auth_required:
                raise e.AuthenticationFailed(
                    "missing API key: send 'Authorization: Bearer <virtual key>' (keys are made with "
                    "'polyroute keys create' or POST /admin/keys)",
                    code="missing_api_key",
                )
            return None
        h = hash_key(secret)
        if self.master_hash is not None and same_hash(h, self.master_hash):
            return MASTER
        # A known key is a dictionary hit; only an unknown one waits for the database.
        key = self.keys.by_hash.get(h) or await self.keys.lookup(secret, h)
        if key is None:
            if self.auth_required:
                raise e.AuthenticationFailed("invalid API key", code="invalid_api_key")
            return None  # an open gateway ignores whatever key the SDK sends
        if key.revoked_at is not None or key.expires_at is not None:
            why = key.usable(time.time())
            if why is not None:
                raise e.AuthenticationFailed(why, code="invalid_api_key")
        return key

    def _team(self, key: Key) -> Team:
        return self.keys.teams.get(key.team_id, _NO_TEAM) if key.team_id else _NO_TEAM

    def allowed(self, key: Key, model: str) -> bool:
        return key.rule.allows(model) and self._team(key).rule.allows(model)

    def _enforce_models(
        self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest, key: Key, allowed: frozenset[str]
    ) -> None:
        asked = [req.model, *(req.options.models or [] if req.options is not None else [])]
        for m in asked:
            if m not in allowed and not self.allowed(key, m):
                raise e.PermissionDenied(
                    f"this API key may not use model '{m}'", param="model", code="model_not_allowed"
                )
        # The router reads this: 403 for the asked model, and fallbacks outside it are skipped.
        ctx.allowed_models = allowed

    def _profile(self, key: Key) -> _Profile:
        team = self._team(key)
        prof = self._profiles.get(key.id)
        if prof is None or prof.key is not key or prof.team is not team:
            rules = key.rule.source is not None or team.rule.source is not None
            allowed = frozenset(n for n in self.cfg.models if self.allowed(key, n)) if rules else frozenset()
            prof = self._profiles[key.id] = _Profile(key, team, rules, allowed, self._make_subjects(key))
        return prof

    def _make_subjects(self, key: Key) -> list[Subject]:
        out = []
        for sid, label, lim in (
            (f"key:{key.id}", f"key '{key.name or key.prefix}'", key.limits),
            (f"team:{key.team_id}", f"team '{self._team(key).name}'", self._team(key).limits),
        ):
            if _limited(lim):
                out.append(
                    Subject(
                        sid, label, lim.rpm, lim.tpm, lim.budget_daily, lim.budget_monthly, lim.budget_mode == "hard"
                    )
                )
        return out

    def estimate(self, req: t.ChatRequest | t.EmbeddingRequest) -> tuple[int, int, float]:
        """(tokens for rate limits, output tokens assumed, worst-case USD) before the call."""
        if isinstance(req, t.EmbeddingRequest):
            tin, out_max, out_rate = sum(estimate_text(x) for x in req.inputs), 0, 0
        else:
            tin = estimate_prompt(req)
            out_rate = req.max_tokens or 0
            out_max = (req.max_tokens or self.gcfg.reserve_output_tokens) * max(1, req.n)
        price = self.asked_price.get(req.model) if req.options is None else None
        pin, pout = price if price is not None else self._highest_price(self._candidate_models(req))
        return tin + out_rate, out_max, tin * pin + out_max * pout

    def _candidate_models(self, req: t.ChatRequest | t.EmbeddingRequest) -> list[str]:
        out = [req.model]
        opts = req.options
        if opts is not None and opts.models:
            out.extend(opts.models)
        route = self.cfg.models.get(req.model)
        if route is not None and (opts is None or opts.fallbacks is not False):
            out.extend(route.fallbacks)
        return out

    async def _reserve(
        self, req: t.ChatRequest | t.EmbeddingRequest, key: Key, subjects: list[Subject]
    ) -> Reservation:
        tokens, _, cost = self.estimate(req)
        res = await self.counters.reserve(subjects, tokens, cost, time.time(), self.hold)
        for msg in res.alerts:
            log.warning("budget alert: %s", msg)
            self._spawn(self._audit_quietly("gateway", "budget.alert", key.id, {"message": msg}))
        return res

    async def _audit_quietly(self, actor: str, action: str, target: str | None, detail: dict[str, Any]) -> None:
        try:
            await self.store.audit(actor, action, target, detail)
        except Exception as exc:
            log.warning("audit log write failed (%s)", type(exc).__name__)

    # --- after -------------------------------------------------------------------------------------

    async def after(self, ctx: RequestContext) -> None:
        if ctx.error is not None:
            # Vendors echo keys in their error messages ("Incorrect API key provided: sk-..."), and
            # the error object is rendered to the client after this hook: scrub it in place.
            _scrub_error(ctx.error, self.redactor)
        pending = self._pending.pop(ctx.request_id, None)
        if pending is None:
            return
        if pending.reservation is not None:
            u = ctx.usage
            tokens = u.input_tokens + u.output_tokens if u is not None else 0
            await self.counters.settle(pending.reservation, tokens, ctx.cost)
        key = pending.key
        if key is not None and ctx.allowed_models is not None and ctx.deployment is not None:
            served = self.served_model.get(ctx.deployment)
            if served is not None and served not in ctx.allowed_models:
                log.error(
                    "request %s was served by model '%s', outside key %s's allow-list", ctx.request_id, served, key.id
                )
        self._write_row(ctx, pending)

    def _write_row(self, ctx: RequestContext, pending: _Pending) -> None:
        if self.ledger is None:
            return
        try:
            response = None
            if pending.prompt is not None and ctx.output_text is not None:
                response = self.redactor.apply("".join(ctx.output_text))
            values, attempts = self.row_values(ctx, pending.key, pending.prompt, response)
        except Exception:
            log.exception("could not build the ledger row of request %s", ctx.request_id)
            return
        self.ledger.submit_values(values, attempts)

    def row_values(
        self, ctx: RequestContext, key: Key | None, prompt: str | None = None, response: str | None = None
    ) -> tuple[tuple[object, ...], tuple[tuple[object, ...], ...]]:
        """The request's ledger row and attempt rows as the database's values (rows.LEDGER_COLUMNS,
        rows.ATTEMPT_COLUMNS): built straight from the context, with no row objects in between,
        because this runs once per request on the event loop."""
        elapsed = time.monotonic() - ctx.started
        ts = time.time() - elapsed
        rid = ctx.request_id
        vendor_of = self.vendor_of
        attempts = tuple([
            (
                rid, i, ts, a.deployment, a.provider, vendor_of.get(a.provider, a.provider), a.status,
                self.redactor.secrets_only(a.error)[:1000] if a.error else None, a.latency * 1000.0,
                a.usage.input_tokens if a.usage else 0, a.usage.output_tokens if a.usage else 0, float(a.cost),
            )
            for i, a in enumerate(ctx.attempts)
        ])  # fmt: skip
        u = ctx.usage or _NO_USAGE
        err = ctx.error
        provider = ctx.provider
        values = (
            rid, ts, utc_day(ts), key.id if key is not None else None,
            (key.team_id or None) if key is not None else None, ctx.api, ctx.model_asked, ctx.route,
            ctx.deployment, provider, vendor_of.get(provider, provider) if provider else None, len(attempts),
            u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens, u.reasoning_tokens,
            int(u.estimated), float(ctx.cost), elapsed * 1000.0, ctx.ttft * 1000.0 if ctx.ttft is not None else None,
            ctx.status, type(err).__name__ if err is not None else None,
            self.redactor.secrets_only(err.message)[:1000] if err is not None else None, int(ctx.stream),
            None if ctx.tags is None else msgspec.json.encode(ctx.tags).decode(), ctx.end_user, prompt, response,
        )  # fmt: skip
        return values, attempts

    # --- used by the admin API -----------------------------------------------------------------------

    async def status_of(self, key: Key) -> dict[str, Any]:
        now = time.time()
        day, month = periods(now)
        return {
            "key": await self.counters.status(f"key:{key.id}", now),
            "team": await self.counters.status(f"team:{key.team_id}", now),
            "day": day,
            "month": month,
        }


def _limited(lim: Limits) -> bool:
    return any(v is not None for v in (lim.rpm, lim.tpm, lim.budget_daily, lim.budget_monthly))


def _header_values(cfg: Config) -> list[str]:
    # Provider headers often carry credentials too (api-key, x-goog-api-key, Authorization).
    return [v for p in cfg.providers.values() for v in (p.headers or {}).values()]


def _scrub_error(err: e.GatewayError, redactor: Redactor) -> None:
    for x in (err, *getattr(err, "errors", ())):
        clean = redactor.secrets_only(x.message)
        if clean != x.message:
            x.message = clean
            x.args = (clean,)
