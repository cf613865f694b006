"""Configuration reload without a restart (SIGHUP, POST /admin/reload).

The file is read and validated whole first: schema, references, feature checks, building the
catalogue and router, starting the providers that changed. Only then is the gateway switched,
in one synchronous assignment (no await between the reads of the old and the writes of the new),
so every request uses one catalogue from start to end: requests that started before keep the
old catalogue and router they already hold, new requests get the new ones.

Providers whose configuration did not change are carried over as they are (pooled connections,
an in-house model already loaded). The others of the old catalogue are closed once the requests
counted on it have finished (`Generation.inflight`), or after `ops.reload_drain_timeout`.

What a reload changes: `providers` and `models` (the catalogue; routing state such as breakers,
latency and limits carries over per deployment when its settings did not change). Sections read
once at start-up (`server`, `database`, `ledger`, `governance`, `ops`, and `models.*.shadow`)
are listed in the answer under `restart_required` when they differ.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from polyroute.config.load import ConfigError, load_config
from polyroute.config.schema import Config
from polyroute.core.catalog import Catalog
from polyroute.providers.base import Provider
from polyroute.routing.planner import Router
from polyroute.routing.state import RoutingState

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway

log = logging.getLogger("polyroute.ops.reload")

CONFIG_ENV = "POLYROUTE_CONFIG"  # same as polyroute.server.factory.CONFIG_ENV
SUPERVISOR_ENV = "POLYROUTE_SUPERVISOR_PID"
RESTART_SECTIONS = ("server", "database", "ledger", "governance", "ops", "ui", "routing_state")


class ReloadError(Exception):
    """The new configuration was refused; the running one is untouched."""

    def __init__(self, status: int, message: str, *, source: str | None = None, field: str | None = None,
                 problem: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.source, self.field, self.problem, self.fix = source, field, problem, fix

    @classmethod
    def from_config(cls, exc: ConfigError) -> ReloadError:
        return cls(400, str(exc), source=exc.source, field=exc.field, problem=exc.problem, fix=exc.fix)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": str(self), "type": "invalid_configuration" if self.status == 400 else "reload_error"}
        for k in ("source", "field", "problem", "fix"):
            v = getattr(self, k)
            if v is not None:
                err["file" if k == "source" else k] = v
        return {"error": err}


class Generation:
    """One catalogue and router, and how many requests are still using them."""

    __slots__ = ("catalog", "drained", "inflight", "retired", "router")

    def __init__(self, catalog: Catalog, router: Router) -> None:
        self.catalog = catalog
        self.router = router
        self.inflight = 0
        self.retired = False
        self.drained = asyncio.Event()

    def done(self) -> None:
        self.inflight -= 1
        if self.retired and self.inflight <= 0:
            self.drained.set()

    def retire(self) -> None:
        self.retired = True
        if self.inflight <= 0:
            self.drained.set()


def provider_secrets(cfg: Config) -> list[str]:
    out = [p.api_key for p in cfg.providers.values() if p.api_key]
    for p in cfg.providers.values():
        out.extend((p.headers or {}).values())
    if cfg.server.master_key:
        out.append(cfg.server.master_key)
    if cfg.ops is not None:
        out.extend(cfg.ops.logging.redact)
    return out


def default_drain_timeout(cfg: Config) -> float:
    return max([p.timeouts.total for p in cfg.providers.values()] + [0.0]) + 60.0


def _restart_required(running: Config, new: Config) -> list[str]:
    out = [s for s in RESTART_SECTIONS if getattr(running, s) != getattr(new, s)]
    for name in sorted(set(running.models) | set(new.models)):
        a, b = running.models.get(name), new.models.get(name)
        if (a.shadow if a else None) != (b.shadow if b else None):
            out.append(f"models.{name}.shadow")
    return out


def _changes(old: Config, new: Config) -> dict[str, dict[str, list[str]]]:
    def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[str]]:
        return {
            "added": sorted(set(b) - set(a)),
            "removed": sorted(set(a) - set(b)),
            "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k]),
        }

    return {"providers": diff(old.providers, new.providers), "models": diff(old.models, new.models)}


def carry_state(old: Router, new_catalog: Catalog) -> RoutingState:
    """Routing state for the new router: the same state, less the handles of deployments and
    routes the reload removed. Handles whose settings changed are made afresh when the new router
    asks for them (routing/memory.py: Settings); the rest keep their health, latency, limits,
    retry budgets and pins."""
    state = old.state
    deployments = {d.id for r in new_catalog.routes.values() for d in r.deployments}
    state.keep_only(deployments, set(new_catalog.routes))
    return state


class Reloader:
    def __init__(self, gateway: Gateway, *, drain_timeout: float | None = None, path: str | None = None) -> None:
        self.gateway = gateway
        # The configuration in force for the sections a reload does not change.
        self.boot_config = gateway.config
        self.path = path or os.environ.get(CONFIG_ENV) or None
        self.drain_timeout = drain_timeout
        self.current = Generation(gateway.catalog, gateway.router)
        self.retired: list[Generation] = []
        self._lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reloaded_at: float | None = None
        self.last_error: str | None = None
        # Callbacks run after a successful switch (metrics, log redaction, tracing).
        self.listeners: list[Any] = []

    # --- request accounting (called by the ops policy) ----------------------------------------

    def enter(self) -> Generation:
        g = self.current
        g.inflight += 1
        return g

    # --- reload -------------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        if self.path is None:
            raise ReloadError(
                409,
                "this gateway was started without a configuration file: there is nothing to reload",
                fix="start it with `polyroute serve --config FILE`",
            )
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                return await self._reload(self.path)
            except ReloadError as exc:
                self.last_error = str(exc)
                raise

    async def _reload(self, path: str) -> dict[str, Any]:
        gw = self.gateway
        try:
            # Reading a small file: blocking for a moment is fine here, off the request path.
            cfg, digest = load_config(path)
            self._check_features(cfg, path)
        except ConfigError as exc:
            raise ReloadError.from_config(exc) from None
        previous = gw.config_hash
        if digest == previous:
            return {"status": "unchanged", "config_hash": digest}
        old_cfg = gw.config
        catalog, fresh = self._build_catalog(cfg, path)
        try:
            try:
                router = Router(catalog, state=carry_state(gw.router, catalog), clock=gw.router.clock)
            except ConfigError as exc:
                raise ReloadError(400, f"{path}: {exc.field}: {exc.problem}. Fix: {exc.fix}", source=path,
                                  field=exc.field, problem=exc.problem, fix=exc.fix) from None
            for name, p in fresh.items():
                try:
                    await p.start()
                except Exception as exc:
                    raise ReloadError(400, f"{path}: providers.{name}: could not start ({exc})", source=path,
                                      field=f"providers.{name}", problem=f"could not start ({exc})",
                                      fix="correct the provider's settings") from None
            await router.start()
        except BaseException:
            await _close_all(fresh.values())
            raise
        # The switch: one synchronous block, so no request sees half of it.
        old = self.current
        new = Generation(catalog, router)
        gw.config, gw.config_hash, gw.catalog, gw.router = cfg, digest, catalog, router
        self.current = new
        for policy in gw.policies:
            try:
                # Policies that hold the catalogue or router (prices, shadow traffic) re-read them.
                policy.attach(gw)
            except Exception:
                log.exception("policy %s failed to re-attach after a reload", type(policy).__name__)
        for fn in self.listeners:
            try:
                fn(cfg, digest)
            except Exception:
                log.exception("reload listener failed")
        old.retire()
        self.retired.append(old)
        timeout = self.drain_timeout if self.drain_timeout is not None else default_drain_timeout(old_cfg)
        task = asyncio.get_running_loop().create_task(self._drain(old, timeout), name="polyroute-reload-drain")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.reloaded_at = time.time()
        self.last_error = None
        answer: dict[str, Any] = {
            "status": "reloaded",
            "config_hash": digest,
            "previous_hash": previous,
            "changes": _changes(old_cfg, cfg),
            "draining_requests": old.inflight,
        }
        restart = _restart_required(self.boot_config, cfg)
        if restart:
            answer["restart_required"] = restart
            log.warning("configuration reloaded; these sections change only at a restart: %s", ", ".join(restart))
        log.info("configuration reloaded from %s: hash %s -> %s", path, previous, digest)
        return answer

    def _check_features(self, cfg: Config, path: str) -> None:
        """The checks start-up runs besides parsing (parse_config already ran the feature checks)."""
        try:
            from polyroute.governance.setup import check, enabled
        except ImportError:
            pass
        else:
            if enabled(cfg):
                check(cfg, path)
        from polyroute.ops.setup import check as ops_check

        ops_check(cfg, path)

    def _build_catalog(self, cfg: Config, path: str) -> tuple[Catalog, dict[str, Provider]]:
        """The new catalogue, with unchanged providers taken over from the running one; and the
        providers it created (to start, or to close if the reload fails)."""
        try:
            catalog = Catalog(cfg)
        except ConfigError as exc:
            raise ReloadError.from_config(exc) from None
        except Exception as exc:
            raise ReloadError(400, f"{path}: {exc}", source=path, problem=str(exc),
                              fix="correct the provider or model settings named above") from None
        running = self.gateway.catalog.providers
        fresh: dict[str, Provider] = {}
        unused: list[Provider] = []
        for name, p in list(catalog.providers.items()):
            old = running.get(name)
            if old is not None and old.config == p.config:
                catalog.providers[name] = old
                unused.append(p)
            else:
                fresh[name] = p
        for route in catalog.routes.values():
            for d in route.deployments:
                d.provider = catalog.providers[d.provider.name]
        for p in unused:
            # Built but never started; closing releases what a constructor may hold (thread pools).
            t = asyncio.get_running_loop().create_task(_close_all([p]))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return catalog, fresh

    async def _drain(self, old: Generation, limit: float) -> None:
        try:
            await asyncio.wait_for(old.drained.wait(), limit)
        except TimeoutError:
            log.warning("%d request(s) still used the previous catalogue after %.0f s; closing it anyway",
                        old.inflight, limit)
        await self._close_generation(old)

    async def _close_generation(self, old: Generation) -> None:
        if old not in self.retired:
            return
        self.retired.remove(old)
        keep = {id(p) for p in self.gateway.catalog.providers.values()}
        for g in self.retired:
            keep.update(id(p) for p in g.catalog.providers.values())
        try:
            await old.router.close()
        except Exception:
            log.exception("closing the previous router failed")
        await _close_all(p for p in old.catalog.providers.values() if id(p) not in keep)

    async def close(self) -> None:
        """Shutdown: close every catalogue still draining (requests have finished by now)."""
        for t in list(self._tasks):
            t.cancel()
        for g in list(self.retired):
            await self._close_generation(g)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config_file": self.path, "draining_generations": len(self.retired)}
        if self.reloaded_at is not None:
            out["reloaded_at"] = self.reloaded_at
        if self.last_error is not None:
            out["last_reload_error"] = self.last_error
        return out

    # --- more than one worker -------------------------------------------------------------------

    def signal_siblings(self) -> bool:
        """Under `serve --workers N`, ask the supervisor to pass SIGHUP to every worker (this one
        included, which then finds the file unchanged). False when there is no supervisor."""
        import signal

        sup = os.environ.get(SUPERVISOR_ENV)
        if not sup or not sup.isdigit() or int(sup) != os.getppid():
            return False
        try:
            os.kill(int(sup), signal.SIGHUP)
        except OSError:
            return False
        return True


async def _close_all(providers: Any) -> None:
    for p in providers:
        try:
            await p.close()
        except Exception:
            log.exception("closing provider %s failed", getattr(p, "name", p))
