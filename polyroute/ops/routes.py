"""The operations routes: GET /metrics, GET /health/ready, POST /admin/reload.

/health/ready answers 200 "ready" when every dependency check passes, 200 "degraded" when a
non-critical one fails (the gateway still serves: the ledger spools to disk, requests still
route), and 503 only while starting or when a check registered as critical fails. Taking every
instance out of the load balancer because Redis blinked would turn a degraded dependency into a
full outage; alerts watch `polyroute_health_check_up` instead (docs/operations.md#health).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from polyroute.ops.registry import HealthResult
from polyroute.ops.reload import ReloadError
from polyroute.server.app import api_key_of
from polyroute.server.http import ClientDisconnected, Receive, Scope, Send, read_body, send_bytes, send_json

if TYPE_CHECKING:
    from polyroute.ops.policy import OpsPolicy
    from polyroute.server.app import App

HEALTH_CACHE_SECONDS = 1.0
log = logging.getLogger("polyroute.ops")


def is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        # A Unix socket, or a server that does not say: only local processes can reach those.
        return True
    try:
        ip = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def has_master_key(scope: Scope, master_key: str | None) -> bool:
    if not master_key:
        return False
    presented = api_key_of(scope)
    return presented is not None and hmac.compare_digest(presented.encode(), master_key.encode())


def _error(message: str, kind: str, status: int) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


def metrics_refusal(scope: Scope, access: str, master_key: str | None) -> tuple[int, dict[str, Any]] | None:
    """None when the caller may read /metrics, else (status, body)."""
    if access == "open" or (access == "loopback" and is_loopback(scope)):
        return None
    if has_master_key(scope, master_key):
        return None
    if not master_key:
        return _error(
            "/metrics is readable from loopback only; set server.master_key (and send it as a Bearer token) "
            "or ops.metrics.access: open",
            "permission_error",
            403,
        )
    return _error("/metrics needs the master key (Authorization: Bearer ...)", "authentication_error", 401)


class HealthChecks:
    """Runs the registered checks concurrently, each bounded; one run at a time, reused for a
    second so a burst of probes costs one round of pings."""

    def __init__(self, policy: OpsPolicy) -> None:
        self.policy = policy
        self._last: tuple[float, dict[str, dict[str, Any]], bool] | None = None
        self._running: asyncio.Task[tuple[dict[str, dict[str, Any]], bool]] | None = None

    async def run(self) -> tuple[dict[str, dict[str, Any]], bool]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < HEALTH_CACHE_SECONDS:
            return self._last[1], self._last[2]
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        # shield: a probe that hangs up must not cancel the run other probes wait for
        checks, critical_failed = await asyncio.shield(self._running)
        self._last = (time.monotonic(), checks, critical_failed)
        return checks, critical_failed

    async def _one(self, check: Any, limit: float) -> HealthResult:
        try:
            r = await asyncio.wait_for(check(), limit)
        except TimeoutError:
            return HealthResult(False, f"no answer within {limit:g} s")
        except Exception as exc:
            return HealthResult(False, f"{type(exc).__name__}: {exc}")
        return r if isinstance(r, HealthResult) else HealthResult(bool(r))

    async def _run(self) -> tuple[dict[str, dict[str, Any]], bool]:
        health = list(self.policy.registry.health.values())
        timeout = self.policy.config.health_check_timeout
        results = await asyncio.gather(*(self._one(h.check, timeout) for h in health))
        out: dict[str, dict[str, Any]] = {}
        critical_failed = False
        metrics = self.policy.metrics
        for h, r in zip(health, results, strict=True):
            out[h.name] = {"ok": r.ok, "detail": r.detail} | ({"critical": True} if h.critical else {})
            if not r.ok and h.critical:
                critical_failed = True
            if metrics is not None:
                metrics.health.labels(h.name).set(1 if r.ok else 0)
        return out, critical_failed


def install(app: App, policy: OpsPolicy) -> None:
    checks = HealthChecks(policy)

    async def ready(scope: Scope, receive: Receive, send: Send) -> None:
        gw = app.gateway
        body: dict[str, Any] = {"config_hash": gw.config_hash, "pid": os.getpid()}
        if not app.started:
            await send_json(send, 503, {"status": "starting", **body})
            return
        results, critical_failed = await checks.run()
        failing = [name for name, r in results.items() if not r["ok"]]
        status = "unavailable" if critical_failed else "degraded" if failing else "ready"
        body = {"status": status, **body, "checks": results}
        if policy.reloader is not None:
            body.update(policy.reloader.status())
        await send_json(send, 503 if critical_failed else 200, body)

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        m = policy.metrics
        if m is None:
            await send_json(send, *_error("metrics are off (ops.metrics.enabled: false)", "not_found_error", 404))
            return
        refusal = metrics_refusal(scope, policy.config.metrics.access, policy.master_key)
        if refusal is not None:
            await send_json(send, *refusal)
            return
        policy.sample()
        body = await asyncio.to_thread(m.render)
        from prometheus_client import CONTENT_TYPE_LATEST

        await send_bytes(
            send, 200, body,
            [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())],
        )

    async def reload(scope: Scope, receive: Receive, send: Send) -> None:
        if not policy.master_key:
            await send_json(send, *_error(
                "POST /admin/reload needs server.master_key to be set (SIGHUP reloads without it)",
                "permission_error", 403,
            ))
            return
        if not has_master_key(scope, policy.master_key):
            await send_json(send, *_error("POST /admin/reload needs the master key (Authorization: Bearer ...)",
                                          "authentication_error", 401))
            return
        try:
            await read_body(scope, receive, 1 << 16)  # nothing is read from it; the file is the input
        except ClientDisconnected:
            return
        except Exception as exc:
            await send_json(send, *_error(str(exc), "invalid_request_error", 400))
            return
        assert policy.reloader is not None
        m = policy.metrics
        try:
            result = await policy.reloader.reload()
        except ReloadError as exc:
            if m is not None:
                m.reloads.labels("invalid").inc()
            await send_json(send, exc.status, exc.body())
            return
        except Exception as exc:
            log.exception("configuration reload failed; the running configuration stays")
            if m is not None:
                m.reloads.labels("failed").inc()
            await send_json(send, *_error(f"reload failed ({type(exc).__name__}: {exc}); the running "
                                          "configuration stays", "reload_error", 500))
            return
        if result["status"] == "reloaded":
            # Under --workers N the other workers reload through the supervisor's SIGHUP.
            result["workers"] = "all (signalled)" if policy.reloader.signal_siblings() else "this process"
        elif m is not None:
            m.reloads.labels("unchanged").inc()
        await send_json(send, 200, result)

    app.add_route("GET", "/health/ready", ready)
    app.add_route("GET", "/metrics", metrics)
    app.add_route("POST", "/admin/reload", reload)
