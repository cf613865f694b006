"""Each strategy's ordering, on a router built from a config (no network: nothing is called)."""

from __future__ import annotations

import random
from collections import Counter

from polyroute.config.load import parse_config
from polyroute.core import types as t
from polyroute.core.catalog import Catalog
from polyroute.core.context import RequestContext
from polyroute.routing.planner import Router
from polyroute.routing.sticky import sticky_key
from polyroute.routing.strategies import STRATEGIES, Strategy, register_strategy, strategy_class
from polyroute.routing.targets import RequestView, Target

PROVIDERS = """
providers:
  a: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
  b: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
  c: {type: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
"""


def router(models: str) -> Router:
    return Router(Catalog(parse_config(PROVIDERS + models, "<test>")))


def chat(text: str = "hello", **kw: object) -> t.ChatRequest:
    return t.ChatRequest(model="m", messages=[t.Message(role="user", content=[t.TextPart(text=text)])], **kw)  # type: ignore[arg-type]


def order(r: Router, req: t.ChatRequest | None = None, route: str = "m") -> list[str]:
    rt = r.routes[route]
    req = req or chat()
    view = RequestView(req, RequestContext("r", "openai"))
    return [x.key for x in rt.strategy.order(list(rt.targets), view)]


THREE = """
models:
  m:
    strategy: {strategy}
    deployments:
      - {{provider: a, model: x, name: A, weight: {wa}, input_price: 3, output_price: 15}}
      - {{provider: b, model: x, name: B, weight: {wb}, input_price: 1, output_price: 2}}
      - {{provider: c, model: x, name: C, weight: {wc}}}
"""


def three(strategy: str, wa: float = 1, wb: float = 1, wc: float = 1) -> Router:
    return router(THREE.format(strategy=strategy, wa=wa, wb=wb, wc=wc))


def test_priority_keeps_config_order() -> None:
    assert order(three("priority")) == ["A", "B", "C"]


def test_weighted_first_pick_follows_weights() -> None:
    r = three("weighted", wa=6, wb=3, wc=1)
    r.routes["m"].strategy.random = random.Random(7).random
    firsts = Counter(order(r)[0] for _ in range(10_000))
    assert 5700 < firsts["A"] < 6300
    assert 2700 < firsts["B"] < 3300
    assert 800 < firsts["C"] < 1200


def test_weighted_two_deployments_and_zero_weight() -> None:
    r = router("""
models:
  m:
    strategy: weighted
    deployments:
      - {provider: a, model: x, name: A, weight: 3}
      - {provider: b, model: x, name: B, weight: 1}
""")
    r.routes["m"].strategy.random = random.Random(1).random
    firsts = Counter(order(r)[0] for _ in range(8000))
    assert 5700 < firsts["A"] < 6300
    z = three("weighted", wa=1, wb=0, wc=1)
    z.routes["m"].strategy.random = random.Random(2).random
    for _ in range(200):
        assert order(z)[-1] == "B"  # weight 0: only as overflow


def test_least_latency_orders_by_ewma_and_ttft_for_streams() -> None:
    r = three("least-latency")
    s = r.routes["m"].strategy
    s.random = lambda: 0.99  # never explore
    a, b, c = r.routes["m"].targets
    # Unmeasured deployments come first, so each gets measured.
    a.latency.observe_latency(0.5)
    assert order(r)[0] in ("B", "C")
    b.latency.observe_latency(0.2)
    c.latency.observe_latency(0.9)
    assert order(r) == ["B", "A", "C"]
    a.latency.observe_ttft(0.05)
    b.latency.observe_ttft(0.1)
    c.latency.observe_ttft(0.3)
    assert order(r, chat(stream=True)) == ["A", "B", "C"]


def test_least_latency_explores_sometimes() -> None:
    r = three("least-latency")
    s = r.routes["m"].strategy
    rnd = random.Random(3)
    s.random = rnd.random
    a, b, c = r.routes["m"].targets
    a.latency.observe_latency(0.1)
    b.latency.observe_latency(0.2)
    c.latency.observe_latency(0.3)
    firsts = Counter(order(r)[0] for _ in range(4000))
    assert firsts["A"] > 3700
    assert firsts["B"] > 0 and firsts["C"] > 0  # explored


def test_least_busy_uses_in_flight_counts() -> None:
    r = three("least-busy")
    a, b, _c = r.routes["m"].targets
    assert order(r) == ["A", "B", "C"]  # ties: config order
    a.capacity.acquire(0.0, 0)
    a.capacity.acquire(0.0, 0)
    b.capacity.acquire(0.0, 0)
    assert order(r) == ["C", "B", "A"]
    a.capacity.release()
    a.capacity.release()
    assert order(r) == ["A", "C", "B"]


def test_cost_prefers_cheapest_and_unpriced_last() -> None:
    r = three("cost")
    assert order(r) == ["B", "A", "C"]


def test_cost_depends_on_request_shape() -> None:
    r = router("""
models:
  m:
    strategy: cost
    deployments:
      - {provider: a, model: x, name: cheap-in, input_price: 1, output_price: 20}
      - {provider: b, model: x, name: cheap-out, input_price: 4, output_price: 4}
""")
    # Long prompt, short answer: input price dominates.
    assert order(r, chat("x" * 40_000, max_tokens=10)) == ["cheap-in", "cheap-out"]
    # Short prompt, long answer: output price dominates.
    assert order(r, chat("hi", max_tokens=4000)) == ["cheap-out", "cheap-in"]


def test_quality_is_a_pluggable_strategy_class() -> None:
    saved = dict(STRATEGIES)
    try:

        @register_strategy
        class Reverse(Strategy):
            name = "quality"

            def order(self, targets: list[Target], view: RequestView) -> list[Target]:
                targets.reverse()
                return targets

        assert strategy_class("quality") is Reverse
        assert order(three("quality")) == ["C", "B", "A"]
    finally:
        STRATEGIES.clear()
        STRATEGIES.update(saved)


def test_sticky_keys() -> None:
    from polyroute.config.schema import StickyConfig

    base = chat("the same start")
    follow = t.ChatRequest(
        model="m",
        messages=[*base.messages, t.Message(role="assistant", content=[t.TextPart(text="a")]),
                  t.Message(role="user", content=[t.TextPart(text="more")])],
    )
    by_msgs = StickyConfig(by="messages", messages=1)
    assert sticky_key(base, by_msgs) == sticky_key(follow, by_msgs) is not None
    assert sticky_key(chat("another"), by_msgs) != sticky_key(base, by_msgs)
    by_user = StickyConfig(by="user")
    assert sticky_key(chat(user="u1"), by_user) == sticky_key(chat("other", user="u1"), by_user)
    assert sticky_key(chat(), by_user) is None
    explicit = chat(options=t.RequestOptions(sticky_key="conv-1"))
    assert sticky_key(explicit, None) == sticky_key(chat("x", options=t.RequestOptions(sticky_key="conv-1")), by_user)
    assert sticky_key(chat(), None) is None
