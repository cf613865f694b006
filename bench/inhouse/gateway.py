"""The in-house models end to end: a real gateway (uvicorn, loopback) and the OpenAI SDK.

Measures what a client sees: gateway start-up (which loads the models), the first requests,
time to first token and tokens/s over SSE, embedding latency over HTTP, and the
RSS the in-house models add to the gateway process.

    .venv/bin/python bench/inhouse/gateway.py --runs 5
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from common import ROOT, machine, rss_mb, save, summary

sys.path.insert(0, str(ROOT))

import openai

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING
from tests.helpers.gateway import run_gateway

CONFIG = f"""
providers:
  local: {{type: inhouse}}
models:
  {INHOUSE_CHAT}:
    deployments: [{{provider: local, model: {INHOUSE_CHAT}}}]
  {INHOUSE_EMBEDDING}:
    kind: embedding
    deployments: [{{provider: local, model: {INHOUSE_EMBEDDING}}}]
"""
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def stream_once(c: openai.OpenAI, max_tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    tokens = 0
    for chunk in c.chat.completions.create(
        model=INHOUSE_CHAT, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True},
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - t0
    assert first is not None
    return {"ttft_s": first, "tokens": tokens, "tokens_per_s": (tokens - 1) / (total - first) if tokens > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    import numpy  # noqa: F401  (part of the gateway's own baseline)
    import uvicorn  # noqa: F401

    rss0 = rss_mb()
    t0 = time.perf_counter()
    with run_gateway(CONFIG) as gw:
        started = time.perf_counter() - t0
        rss_started = rss_mb()
        c = openai.OpenAI(base_url=gw.openai_base, api_key="unused", max_retries=0, timeout=300)
        t1 = time.perf_counter()
        c.chat.completions.create(model=INHOUSE_CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        first_chat = time.perf_counter() - t1
        t1 = time.perf_counter()
        c.embeddings.create(model=INHOUSE_EMBEDDING, input="hello")
        first_embed = time.perf_counter() - t1
        rss_loaded = rss_mb()
        streams = [stream_once(c, args.tokens) for _ in range(args.runs)]
        emb: dict[str, Any] = {}
        for n in (16, 128, 256):
            text = " ".join(["word"] * (n - 2))
            xs = []
            for _ in range(args.runs * 4):
                t1 = time.perf_counter()
                r = c.embeddings.create(model=INHOUSE_EMBEDDING, input=text)
                xs.append((time.perf_counter() - t1) * 1000)
                assert r.usage.prompt_tokens == n
            emb[f"{n}_tokens_ms"] = summary(xs)
        rss_end = rss_mb()
    result = {
        "gateway_start_s": round(started, 3),
        "first_chat_s": round(first_chat, 3),
        "first_embedding_s": round(first_embed, 3),
        "rss_mb": {"before_gateway": round(rss0, 1), "gateway_started": round(rss_started, 1),
                   "first_requests_served": round(rss_loaded, 1), "after_runs": round(rss_end, 1)},
        "stream": {k: summary([s[k] for s in streams]) for k in ("ttft_s", "tokens_per_s")},
        "embedding_http": emb,
        "machine": machine(),
    }
    print(
        f"gateway up (models loaded) in {started:.2f} s; first chat {first_chat:.2f} s, first embedding "
        f"{first_embed:.2f} s; RSS {rss0:.0f} -> {rss_started:.0f} (started) -> {rss_loaded:.0f} "
        f"(first requests served) -> {rss_end:.0f} MB; stream TTFT {result['stream']['ttft_s']['median'] * 1000:.0f} ms, "
        f"{result['stream']['tokens_per_s']['median']:.1f} tok/s; embeddings over HTTP "
        + ", ".join(f"{n} tok {emb[f'{n}_tokens_ms']['median']:.1f} ms" for n in (16, 128, 256))
        + f"; loadavg {result['machine']['loadavg_1m']:.1f}"
    )
    print("saved", save("gateway", result))


if __name__ == "__main__":
    main()
