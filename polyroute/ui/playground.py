"""Side by side: one prompt to two models, answers shown as "A" and "B", the person votes, and the
vote becomes a routing record the learned router trains on (docs/evaluation.md's format):

    {"prompt": ..., "scores": {winner: 1.0, loser: 0.0}, "costs": {model: usd, ...}, "task": "playground"}

(a tie scores 0.5 each, "both bad" 0.0 each). Answers run on the gateway's router without the
caller-facing policies, as `polyroute compare` does (no fallbacks: an answer is the named model's);
when governance keeps a ledger, each answer still gets a ledger row (api "playground", no key) so the
money shows in the spend views.

No state between the two calls: the match is a signed token holding the pair (sorted), their costs,
the prompt's hash, a nonce and an expiry; which model is "A" is derived from the nonce with the
server's secret, so the page cannot tell until the vote is in. A used nonce is remembered until its
token expires (per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.core.context import RequestContext
from polyroute.core.gateway import Gateway
from polyroute.evaluation.calls import build_request
from polyroute.routing import executor
from polyroute.server.http import new_request_id
from polyroute.ui.auth import Signer

if TYPE_CHECKING:
    from polyroute.governance.policy import Governance

log = logging.getLogger("polyroute.ui")

MAX_PROMPT_CHARS = 32_000
MATCH_TTL = 3600.0
WINNERS = ("A", "B", "tie", "both_bad")


@dataclass
class Answer:
    model: str
    text: str = ""
    latency_ms: float = 0.0
    cost: float = 0.0
    error: str | None = None


class Playground:
    def __init__(self, gateway: Gateway, gov: Governance | None, signer: Signer, preferences: str) -> None:
        self.gateway = gateway
        self.gov = gov
        self.signer = signer
        self.preferences = Path(preferences)
        self._used: dict[str, float] = {}
        self._write_lock = asyncio.Lock()

    def models(self) -> list[str]:
        return self.gateway.catalog.names("chat")

    def _pair(self, asked: Any) -> list[str]:
        chat = self.models()
        if asked is None or asked == [] or asked == "random":
            if len(chat) < 2:
                raise e.InvalidRequest("the playground needs at least two chat models in the config")
            return random.sample(chat, 2)
        if not (isinstance(asked, list) and len(asked) == 2 and all(isinstance(m, str) for m in asked)):
            raise e.InvalidRequest("'models' must be two model names, or omitted for a random pair", param="models")
        if asked[0] == asked[1]:
            raise e.InvalidRequest("pick two different models", param="models")
        for m in asked:
            if m not in chat:
                raise e.InvalidRequest(f"'{m}' is not a chat model of this gateway", param="models")
        return list(asked)

    async def _ask(self, model: str, prompt: str, max_tokens: int, actor: str) -> Answer:
        req = build_request(model, [t.Message(role="user", content=[t.TextPart(text=prompt)])],
                            max_tokens=max_tokens, stream=False)  # fmt: skip
        ctx = RequestContext(new_request_id(), "playground")
        ctx.model_asked = ctx.route = model
        ctx.request, ctx.options = req, req.options
        ctx.tags, ctx.end_user = ["playground"], f"ui:{actor}"
        out = Answer(model)
        try:
            resp, _, _ = await executor.run_chat(self.gateway.router, req, ctx)
            ctx.usage = resp.usage
            out.text = resp.choices[0].message.text() if resp.choices else ""
        except e.GatewayError as err:
            ctx.status, ctx.error = err.status, err
            out.error = f"{err.status} {type(err).__name__}: {err.message}"
        ctx.cost = out.cost = sum(a.cost for a in ctx.attempts)
        out.latency_ms = round((time.monotonic() - ctx.started) * 1000.0, 1)
        self._ledger(ctx)
        return out

    def _ledger(self, ctx: RequestContext) -> None:
        gov = self.gov
        if gov is None or gov.ledger is None:
            return
        try:
            gov.ledger.submit_values(*gov.row_values(ctx, None))
        except Exception:  # the answer matters more than its ledger row
            log.exception("could not write the ledger row of playground request %s", ctx.request_id)

    def _order(self, nonce: str, models: list[str]) -> list[str]:
        """[model shown as A, model shown as B]."""
        pair = sorted(models)
        return pair[::-1] if self.signer.mac("swap", nonce)[0] & 1 else pair

    async def run(self, body: dict[str, Any], actor: str) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise e.InvalidRequest("write a prompt", param="prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise e.InvalidRequest(f"the prompt is over {MAX_PROMPT_CHARS} characters", param="prompt")
        max_tokens = body.get("max_tokens", 512)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 8192:
            raise e.InvalidRequest("'max_tokens' must be a whole number from 1 to 8192", param="max_tokens")
        models = self._pair(body.get("models"))
        nonce = os.urandom(12).hex()
        shown = self._order(nonce, models)
        answers = await asyncio.gather(*(self._ask(m, prompt, max_tokens, actor) for m in shown))
        ok = all(a.error is None for a in answers)
        token = None
        if ok:
            token = self.signer.sign("match", {
                "m": sorted(models), "c": {a.model: a.cost for a in answers},
                "h": hashlib.sha256(prompt.encode()).hexdigest(), "n": nonce, "e": time.time() + MATCH_TTL,
            })  # fmt: skip
        return {
            "token": token,
            "answers": [
                {"label": label, "text": a.text, "latency_ms": a.latency_ms, "error": a.error}
                for label, a in zip(("A", "B"), answers, strict=True)
            ],
            # A failed answer cannot be voted on; its error (which may name the model) is shown as is.
            "models": None if ok else {"A": shown[0], "B": shown[1]},
        }

    async def vote(self, body: dict[str, Any]) -> dict[str, Any]:
        token, prompt, winner = body.get("token"), body.get("prompt"), body.get("winner")
        if winner not in WINNERS:
            raise e.InvalidRequest(f"'winner' must be one of {', '.join(WINNERS)}", param="winner")
        m = self.signer.verify("match", token) if isinstance(token, str) else None
        if m is None or not isinstance(prompt, str):
            raise e.InvalidRequest("unknown match: run the prompt again", param="token")
        if float(m.get("e", 0)) <= time.time():
            raise e.InvalidRequest("this match has expired: run the prompt again", param="token")
        if hashlib.sha256(prompt.encode()).hexdigest() != m.get("h"):
            raise e.InvalidRequest("the prompt is not the one these answers were for", param="prompt")
        nonce = str(m["n"])
        now = time.time()
        self._used = {n: x for n, x in self._used.items() if x > now}
        if nonce in self._used:
            raise e.GatewayError("this match has already been voted on", status=409)
        self._used[nonce] = float(m["e"])
        a, b = self._order(nonce, list(m["m"]))
        scores = {
            "A": {a: 1.0, b: 0.0}, "B": {a: 0.0, b: 1.0}, "tie": {a: 0.5, b: 0.5}, "both_bad": {a: 0.0, b: 0.0},
        }[winner]  # fmt: skip
        record = {"prompt": prompt, "scores": scores, "costs": m.get("c") or {}, "task": "playground"}
        try:
            await self._append(record)
        except OSError as exc:
            del self._used[nonce]
            raise e.GatewayError(f"could not write the preference record ({exc.strerror})") from None
        return {"models": {"A": a, "B": b}, "record": record, "file": str(self.preferences)}

    async def _append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        async with self._write_lock:
            await asyncio.to_thread(_append_line, self.preferences, line)


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        # Several workers may append to the same file: one whole line at a time.
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
