"""The ops policy: metrics, access-log context, traces and reload accounting for every request.

It must be the LAST policy (factory.build_policies appends it last): the gateway reads its
router right after the last `before` returns, with no await in between, so the generation this
policy counts a request on is the one whose router serves it (reload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from polyroute.config.schema import Config, OpsConfig
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy
from polyroute.ops.current import CURRENT
from polyroute.ops.logs import REDACTOR
from polyroute.ops.metrics import Metrics
from polyroute.ops.registry import Registry
from polyroute.ops.reload import Generation, Reloader, ReloadError, provider_secrets

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway
    from polyroute.ops.tracing import Tracer

log = logging.getLogger("polyroute.ops")


class OpsPolicy(Policy):
    def __init__(self, cfg: Config) -> None:
        self.config: OpsConfig = cfg.ops or OpsConfig()
        self.master_key = cfg.server.master_key
        self.registry = Registry()
        self.metrics: Metrics | None = Metrics(self.config.metrics, self.registry) if self.config.metrics.enabled else None
        self.tracer: Tracer | None = None
        self.gateway: Gateway | None = None
        self.reloader: Reloader | None = None
        self.in_flight = 0
        self._gen_of: dict[RequestContext, Generation] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._sighup = False
        self._tasks: set[asyncio.Task[Any]] = set()
        REDACTOR.add(provider_secrets(cfg))

    # --- life cycle -------------------------------------------------------------------------

    def attach(self, gateway: Gateway) -> None:
        # Called again after every reload, with the new catalogue in place.
        if self.reloader is None:
            self.gateway = gateway
            self.reloader = Reloader(gateway, drain_timeout=self.config.reload_drain_timeout)
            self.reloader.listeners.append(self._reloaded)
        if self.metrics is not None:
            self.metrics.set_models(gateway.catalog.routes)
        if self.tracer is not None:
            self.tracer.catalog_changed(gateway.catalog)

    def _reloaded(self, cfg: Config, digest: str) -> None:
        REDACTOR.add(provider_secrets(cfg))
        if self.metrics is not None:
            self.metrics.set_config_hash(digest)
            self.metrics.reloads.labels("ok").inc()

    async def start(self) -> None:
        gw = self.gateway
        assert gw is not None and self.reloader is not None
        from polyroute.ops import probes

        probes.install(self, gw)
        if self.config.tracing.enabled and self.tracer is None:
            from polyroute.ops.tracing import Tracer

            self.tracer = Tracer(self.config.tracing)
            self.tracer.catalog_changed(gw.catalog)
        if self.metrics is not None:
            self.metrics.set_config_hash(gw.config_hash)
            self._sampler = asyncio.get_running_loop().create_task(self._sample_loop(), name="polyroute-metrics-sampler")
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):
            # Not the main thread (a gateway inside tests) or no SIGHUP (Windows).
            pass

    async def close(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        for task in list(self._tasks):
            task.cancel()
        if self.reloader is not None:
            await self.reloader.close()
        if self.metrics is not None:
            self.metrics.flush()
            self.metrics.process_exited()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)

    # --- per request --------------------------------------------------------------------------

    async def before(self, ctx: RequestContext, req: t.ChatRequest | t.EmbeddingRequest) -> None:
        reloader = self.reloader
        if reloader is not None:
            self._gen_of[ctx] = reloader.enter()
            self.in_flight += 1
        cur = CURRENT.get()
        if cur is not None:
            cur.ctx = ctx

    async def after(self, ctx: RequestContext) -> None:
        gen = self._gen_of.pop(ctx, None)
        if gen is not None:
            gen.done()
            self.in_flight -= 1
        now = time.monotonic()
        if self.metrics is not None:
            self.metrics.record(ctx, now)
        cur = CURRENT.get()
        if cur is not None:
            cur.ctx = ctx
        if self.tracer is not None:
            self.tracer.record(ctx, now, cur.scope if cur is not None else None, cur)

    # --- background -----------------------------------------------------------------------------

    def sample(self) -> None:
        if self.metrics is not None and self.gateway is not None:
            self.metrics.in_flight.set(self.in_flight)
            self.metrics.sample(self.gateway)

    async def _sample_loop(self) -> None:
        assert self.metrics is not None
        while True:
            try:
                self.sample()
            except Exception:
                log.exception("sampling the metrics failed")
            await asyncio.sleep(self.config.metrics.sample_interval)

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_from_signal(), name="polyroute-sighup-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload_from_signal(self) -> None:
        assert self.reloader is not None
        try:
            result = await self.reloader.reload()
        except ReloadError as exc:
            if self.metrics is not None:
                self.metrics.reloads.labels("invalid").inc()
            log.error("SIGHUP: configuration NOT reloaded, the running one stays: %s", exc)
            return
        except Exception:
            if self.metrics is not None:
                self.metrics.reloads.labels("failed").inc()
            log.exception("SIGHUP: configuration reload failed; the running one stays")
            return
        if result["status"] == "unchanged":
            if self.metrics is not None:
                self.metrics.reloads.labels("unchanged").inc()
            log.info("SIGHUP: configuration unchanged (hash %s)", result["config_hash"])
