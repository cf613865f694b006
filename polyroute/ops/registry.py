"""Where components register the gauges and health checks operations should see.

    reg = registry_of(gateway)            # None when the ops policy is not installed
    reg.add_queue("ledger", lambda: writer.queued)
    reg.add_health("database", ping_database)          # async () -> HealthResult | bool

Gauges are sampled by each worker process every `ops.metrics.sample_interval` seconds and just
before a scrape; health checks run when /health/ready is asked (results cached for a second).
A name registered twice keeps the first registration: a component's own check wins over the
built-in stand-ins in `probes.py`, which register last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyroute.core.gateway import Gateway


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str = ""


HealthCheck = Callable[[], Awaitable[HealthResult | bool]]
# A gauge callable returns one value, or (label values, value) pairs for a labelled gauge.
GaugeValue = float | Iterable[tuple[tuple[str, ...], float]]
GaugeFn = Callable[[], GaugeValue]


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    fn: GaugeFn
    labels: tuple[str, ...] = ()
    # prometheus_client's multiprocess mode: how values of the worker processes combine.
    mode: str = "livesum"


@dataclass(frozen=True)
class Health:
    name: str
    check: HealthCheck
    # A failing critical check makes /health/ready answer 503 (take the instance out of
    # rotation); any other failing check only makes it "degraded" (HTTP 200).
    critical: bool = False


class Registry:
    def __init__(self) -> None:
        self.queues: dict[str, Callable[[], float]] = {}
        self.gauges: dict[str, Gauge] = {}
        self.health: dict[str, Health] = {}

    def add_queue(self, name: str, depth: Callable[[], float]) -> bool:
        """`polyroute_queue_depth{queue=name}`: items waiting in a queue of this process."""
        if name in self.queues:
            return False
        self.queues[name] = depth
        return True

    def add_gauge(
        self, name: str, fn: GaugeFn, *, help: str = "", labels: Iterable[str] = (), mode: str = "livesum"
    ) -> bool:
        """Any other gauge; `name` is the full metric name (use the `polyroute_` prefix)."""
        if name in self.gauges:
            return False
        self.gauges[name] = Gauge(name, help or name, fn, tuple(labels), mode)
        return True

    def add_health(self, name: str, check: HealthCheck, *, critical: bool = False) -> bool:
        if name in self.health:
            return False
        self.health[name] = Health(name, check, critical)
        return True


def registry_of(gateway: Gateway) -> Registry | None:
    """The registry of the ops policy running on this gateway, if there is one."""
    from polyroute.ops.policy import OpsPolicy

    for p in gateway.policies:
        if isinstance(p, OpsPolicy):
            return p.registry
    return None
