"""In-house embedding model: load time, RSS, latency at 16/128/256 tokens, batch throughput.

Each configuration runs in a fresh process (cold load, clean RSS).

    .venv/bin/python bench/inhouse/embed.py
    .venv/bin/python bench/inhouse/embed.py --compare-expand --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from common import machine, rss_mb, save, summary

LENGTHS = (16, 128, 256)


def text_of(tokens: int) -> str:
    return " ".join(["word"] * (tokens - 2))  # + [CLS] and [SEP]


def child(threads: int, expand: bool, runs: int) -> dict[str, Any]:
    import numpy as np  # noqa: F401  (imported before the baseline, like the gateway has it)

    from polyroute.providers.inhouse.embedder import Embedder
    from polyroute.providers.inhouse.models import embedding_model_paths

    rss0 = rss_mb()
    t0 = time.perf_counter()
    emb = Embedder(*embedding_model_paths(), threads=threads, expand_weights=expand)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    latency: dict[str, Any] = {}
    for n in LENGTHS:
        text = text_of(n)
        _, used = emb.embed([text])
        assert used == n, (used, n)
        xs = []
        for _ in range(runs):
            t0 = time.perf_counter()
            emb.embed([text])
            xs.append((time.perf_counter() - t0) * 1000)
        latency[f"{n}_tokens_ms"] = summary(xs)
    batch = [f"sentence number {i} " + text_of(120) for i in range(32)]
    t0 = time.perf_counter()
    _, used = emb.embed(batch)
    batch_s = time.perf_counter() - t0
    rss_after = rss_mb()
    return {
        "threads": threads,
        "expand_weights": expand,
        "load_s": round(load_s, 3),
        "rss_mb": {"before": round(rss0, 1), "loaded": round(rss_loaded, 1), "after_batch": round(rss_after, 1)},
        "latency": latency,
        "batch32x128": {"seconds": round(batch_s, 3), "tokens_per_s": round(used / batch_s)},
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="*")
    ap.add_argument("--compare-expand", action="store_true", help="also run with int8 weights not expanded to float32")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(int(args.child[0]), args.child[1] == "1", args.runs)))
        return
    from polyroute.providers.inhouse.cpu import cpu_threads

    results = []
    for threads in args.threads or [cpu_threads()]:
        for expand in [True, False] if args.compare_expand else [True]:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(threads), str(int(expand)), "--runs", str(args.runs)],
                check=True, capture_output=True, text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results.append(r)
            lat = ", ".join(f"{n} tok {r['latency'][f'{n}_tokens_ms']['median']:.1f} ms" for n in LENGTHS)
            print(
                f"threads={threads} expand_weights={expand}: load {r['load_s']:.2f} s, RSS +{r['rss_mb']['loaded'] - r['rss_mb']['before']:.0f} MB "
                f"(after a 32x128 batch {r['rss_mb']['after_batch']:.0f} MB total); {lat}; "
                f"batch 32x128 {r['batch32x128']['seconds']:.2f} s ({r['batch32x128']['tokens_per_s']} tok/s); "
                f"loadavg {r['machine']['loadavg_1m']:.1f}",
                flush=True,
            )
    print("saved", save("embed", {"runs": args.runs, "results": results}))


if __name__ == "__main__":
    main()
