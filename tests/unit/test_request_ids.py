"""Request ids: unique, growing with time (the ledger's primary-key index is appended to), and
distinct between forked workers (whose random generators start from the parent's state)."""

from __future__ import annotations

import os
import re

from polyroute.server.http import new_request_id


def test_ids_are_unique_and_ordered_by_time() -> None:
    ids = [new_request_id() for _ in range(5000)]
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    stamps = [i[4:18] for i in ids]
    assert stamps == sorted(stamps)


def test_a_forked_worker_draws_other_ids_than_its_parent() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a `--workers` process would draw first
        os.write(w, "".join(new_request_id()[18:] for _ in range(8)).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = os.read(r, 1000).decode()
    os.close(r)
    parent = "".join(new_request_id()[18:] for _ in range(8))
    assert len(child) == 80 and child != parent
