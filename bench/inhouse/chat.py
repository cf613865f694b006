"""In-house chat model: load time, RSS, time to first token, tokens/s, grammar cost.

Each configuration runs in a fresh process (cold load, clean RSS). Generation uses llama.cpp's
`ignore_eos`, so every run produces exactly --tokens tokens and runs compare.

    .venv/bin/python bench/inhouse/chat.py                 # threads = all usable CPUs, and 1
    .venv/bin/python bench/inhouse/chat.py --threads 2 --runs 5 --tokens 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from common import machine, rss_mb, save, summary

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
LONG_PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 90)  # ~1,000 tokens


def run_once(model: Any, body: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    first: list[float] = []
    usage: dict[str, Any] = {}

    def emit(chunk: dict[str, Any]) -> bool:
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
        for c in chunk.get("choices") or ():
            if (c.get("delta") or {}).get("content") and not first:
                first.append(time.perf_counter() - t0)
        if chunk.get("usage"):
            usage.update(chunk["usage"], timings=chunk.get("timings") or {})
        return False

    model.generate(body, emit)
    total = time.perf_counter() - t0
    n = usage["completion_tokens"]
    return {
        "ttft_s": first[0],
        "total_s": total,
        "completion_tokens": n,
        "prompt_tokens": usage["prompt_tokens"],
        "tokens_per_s": (n - 1) / (total - first[0]) if n > 1 else 0.0,
        "prompt_tokens_per_s": usage["timings"].get("prompt_per_second", 0.0),
    }


def cancel_in_prompt(model: Any, base: dict[str, Any]) -> dict[str, float]:
    """Cancel a ~1,000-token prompt at its first progress callback; then time a tiny request,
    which waits if the cancelled prompt were still being processed."""
    t0 = time.perf_counter()
    asked: list[float] = []

    def emit(chunk: dict[str, Any]) -> bool:
        if (chunk.get("prompt_progress") or {}).get("processed", 0) > 0 and not asked:
            asked.append(time.perf_counter() - t0)
        return bool(asked)

    model.generate({**base, "max_tokens": 8, "return_progress": True,
                    "messages": [{"role": "user", "content": LONG_PROMPT}]}, emit)
    returned = time.perf_counter() - t0
    after = run_once(model, {**base, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    return {"cancel_asked_at_s": asked[0], "generate_returned_s": returned, "next_request_ttft_s": after["ttft_s"]}


def child(threads: int, runs: int, tokens: int) -> dict[str, Any]:
    from polyroute.providers.inhouse.llm import ChatModel
    from polyroute.providers.inhouse.models import chat_model_path

    rss0 = rss_mb()
    t0 = time.perf_counter()
    model = ChatModel(chat_model_path(), context_size=2048, parallel=1, threads=threads)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    base = {"max_tokens": tokens, "temperature": 0.0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}, "cache_prompt": False}
    plain = [run_once(model, {**base, "messages": [{"role": "user", "content": PROMPT}]}) for _ in range(runs)]
    long_prompt = [
        run_once(model, {**base, "max_tokens": 8, "messages": [{"role": "user", "content": LONG_PROMPT}]})
        for _ in range(max(1, runs // 2))
    ]
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 700}
    grammar = [
        run_once(model, {**base, "messages": [{"role": "user", "content": "Numbers."}],
                         "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})
        for _ in range(max(1, runs // 2))
    ]
    cancels = [cancel_in_prompt(model, base) for _ in range(max(1, runs // 2))]
    rss_after = rss_mb()
    model.close()
    return {
        "threads": threads,
        "load_s": round(load_s, 3),
        "rss_mb": {"before": round(rss0, 1), "loaded": round(rss_loaded, 1), "after_runs": round(rss_after, 1)},
        "plain": {k: summary([r[k] for r in plain]) for k in ("ttft_s", "tokens_per_s", "prompt_tokens_per_s")},
        "plain_prompt_tokens": plain[0]["prompt_tokens"],
        "long_prompt": {
            "prompt_tokens": long_prompt[0]["prompt_tokens"],
            **{k: summary([r[k] for r in long_prompt]) for k in ("ttft_s", "prompt_tokens_per_s")},
        },
        "json_schema": {k: summary([r[k] for r in grammar]) for k in ("ttft_s", "tokens_per_s")},
        "cancel_in_prompt": {k: summary([r[k] for r in cancels]) for k in cancels[0]},
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="*", help="llama.cpp threads per configuration")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.runs, args.tokens)))
        return
    from polyroute.providers.inhouse.cpu import cpu_threads, usable_cpus

    results = []
    for threads in args.threads or sorted({cpu_threads(), usable_cpus()}):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(threads), "--runs", str(args.runs), "--tokens", str(args.tokens)],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        results.append(r)
        print(
            f"threads={threads}: load {r['load_s']:.2f} s, RSS +{r['rss_mb']['loaded'] - r['rss_mb']['before']:.0f} MB "
            f"(after runs {r['rss_mb']['after_runs']:.0f} MB total); "
            f"TTFT {r['plain']['ttft_s']['median'] * 1000:.0f} ms ({r['plain_prompt_tokens']} prompt tokens), "
            f"{r['plain']['tokens_per_s']['median']:.1f} tok/s; "
            f"{r['long_prompt']['prompt_tokens']}-token prompt TTFT {r['long_prompt']['ttft_s']['median']:.2f} s "
            f"({r['long_prompt']['prompt_tokens_per_s']['median']:.0f} prompt tok/s); "
            f"json_schema {r['json_schema']['tokens_per_s']['median']:.1f} tok/s "
            f"(TTFT {r['json_schema']['ttft_s']['median']:.2f} s); cancelled at the first prompt batch "
            f"({r['cancel_in_prompt']['cancel_asked_at_s']['median']:.2f} s), next request TTFT "
            f"{r['cancel_in_prompt']['next_request_ttft_s']['median'] * 1000:.0f} ms; "
            f"loadavg {r['machine']['loadavg_1m']:.1f}",
            flush=True,
        )
    print("saved", save("chat", {"tokens": args.tokens, "runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
