"""How many threads a model in this process should use."""

from __future__ import annotations

import os

MAX_THREADS = 8  # a 135M model stops scaling well before this


def usable_cpus() -> int:
    """CPUs this process may run on (affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads for one model: half the usable CPUs (at least 1, at most MAX_THREADS).

    The model shares the machine with the event loop, the other model and other processes.
    llama.cpp's threads meet at a barrier after every operation, so when the CPUs are
    oversubscribed one descheduled thread stalls them all: in bench/inhouse/chat.py on a busy
    2-CPU machine, 2 threads fell to ~2 tokens/s where 1 thread kept ~30.
    """
    return max(1, min(usable_cpus() // 2, MAX_THREADS))
