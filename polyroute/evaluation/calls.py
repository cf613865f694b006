"""One answer from one model through the gateway's own request path, measured.

Streaming is the default because it is the only way to see time to first token; the cost is the
gateway's own (`ctx.cost`, from the deployment's prices and the reported usage).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.errors import GatewayError
from polyroute.core.gateway import Gateway


@dataclass
class Outcome:
    model: str
    text: str = ""
    latency: float = 0.0  # seconds, request start to last byte
    ttft: float | None = None  # seconds, request start to first event (streaming only)
    cost: float = 0.0  # USD
    input_tokens: int = 0
    output_tokens: int = 0
    usage_estimated: bool = False
    deployment: str | None = None
    provider: str | None = None
    status: int = 200
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def build_request(model: str, messages: list[t.Message], *, max_tokens: int | None = None,
                  temperature: float | None = None, stream: bool = True) -> t.ChatRequest:
    # No fallbacks: the answer must be this model's, or an error.
    return t.ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        stream=stream,
        include_usage=stream,
        options=t.RequestOptions(fallbacks=False),
    )


def _finish(out: Outcome, ctx: RequestContext) -> Outcome:
    out.latency = time.monotonic() - ctx.started
    out.cost = ctx.cost
    out.deployment, out.provider = ctx.deployment, ctx.provider
    if ctx.usage is not None:
        out.input_tokens = ctx.usage.input_tokens
        out.output_tokens = ctx.usage.output_tokens
        out.usage_estimated = ctx.usage.estimated
    return out


async def ask(gateway: Gateway, req: t.ChatRequest, *, api: str = "compare") -> Outcome:
    """Run `req` through `gateway` (policies included, if it has any); errors become the outcome."""
    ctx = RequestContext(f"{api}-{uuid.uuid4().hex[:16]}", api)
    out = Outcome(model=req.model)
    try:
        if req.stream:
            parts: list[str] = []
            events = await gateway.open_chat_stream(req, ctx)
            async for ev in events:
                if isinstance(ev, t.TextDelta) and ev.choice == 0:
                    parts.append(ev.text)
            out.text = "".join(parts)
            out.ttft = ctx.ttft
        else:
            resp = await gateway.chat(req, ctx)
            out.text = resp.choices[0].message.text() if resp.choices else ""
    except GatewayError as err:
        out.status, out.error = err.status, f"{type(err).__name__}: {err.message}"
    except Exception as exc:  # one broken answer must not lose a whole run's results
        out.status, out.error = 500, f"unexpected {type(exc).__name__}: {exc}"
    return _finish(out, ctx)
