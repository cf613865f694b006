"""Paired A/B of polyroute source trees at concurrency 16 (or --connections): the CPU time a request costs.

    git worktree add /tmp/base HEAD~1
    .venv/bin/python bench/ops/paired.py base=/tmp/base new=.          # governed, ~2 min
    .venv/bin/python bench/ops/paired.py --bare base=/tmp/base new=. --rounds 12

Every variant (a name and a source tree; the venv's packages serve all of them) is started once,
pinned to CPU 0 as in bench/run.py, with nginx and wrk on CPU 1; then short wrk runs alternate
between the variants, round after round. This machine's speed drifts by 10-20% within minutes
(other tenants), so a difference between variants is only believable in the same rounds: compare
the minima and medians printed, not single runs. Governed = keys, limits and the SQLite ledger on,
as bench/run.py's polyroute-governed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import payloads
import procstat
import targets
import upstream
import wrkrun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="name=path of a polyroute source tree")
    ap.add_argument("--bare", action="store_true", help="no keys, limits or ledger")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    ap.add_argument("--connections", type=int, default=16, help="wrk's concurrency")
    a = ap.parse_args()
    variants = [v.split("=", 1) for v in a.variants]
    body = payloads.chat_request()
    with tempfile.TemporaryDirectory(prefix="polyroute-paired-") as d:
        work = Path(d)
        work.chmod(0o755)  # nginx's workers (another user) read the canned answers under it
        up = upstream.start(work, "1")
        running: list[tuple[str, targets.Running]] = []
        try:
            for i, (name, tree) in enumerate(variants):
                # The tree's package ahead of the venv's (an editable install of this checkout).
                os.environ["PYTHONPATH"] = str(Path(tree).resolve())
                wd = work / f"v{i}"
                wd.mkdir()
                running.append((name, targets.start_polyroute(up, wd, f"v{i}", 1, not a.bare, "0")))
            os.environ.pop("PYTHONPATH", None)
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in running}
            for _, r in running:  # warm-up
                wrkrun.run(r.base + targets.CHAT, body, r.headers, a.connections, 2, "1")
            for _ in range(a.rounds):
                for name, r in running:
                    pids = procstat.tree(r.proc.pid)
                    c0 = procstat.cpu_seconds(pids)
                    w = wrkrun.run(r.base + targets.CHAT, body, r.headers, a.connections, a.seconds, "1")
                    c1 = procstat.cpu_seconds(pids)
                    if w.errors or not w.requests:
                        raise SystemExit(f"{name}: {w.errors} errors in {w.requests} requests")
                    samples[name].append(((c1 - c0) / w.requests * 1e6, w.rps))
            print(f"{a.rounds} rounds of {a.seconds:g} s at c={a.connections}, {'bare' if a.bare else 'governed'}")
            for name, r in running:
                cpu = [s[0] for s in samples[name]]
                rps = [s[1] for s in samples[name]]
                print(f"  {name:12s} CPU/request min {min(cpu):6.1f} median {statistics.median(cpu):6.1f} µs   "
                      f"req/s max {max(rps):6.0f} median {statistics.median(rps):6.0f}   "
                      f"RSS {procstat.rss_mb(r.proc.pid):.0f} MB")  # fmt: skip
        finally:
            for _, r in running:
                r.stop()
            up.stop()


if __name__ == "__main__":
    main()
