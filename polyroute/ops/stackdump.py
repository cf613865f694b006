"""SIGUSR1 to a worker logs what it is waiting on: every thread's stack and every asyncio task's.

For a worker that does not stop, or a request that never ends: the thread stacks show a blocking
call, the task stacks show the `await` each coroutine is parked on. The dump is one WARNING
record (logger `polyroute.ops`, message starting "stack dump"). Send it to a worker's own pid: the
multi-worker supervisor does not handle SIGUSR1 (its default action would end the supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
import traceback
from types import AsyncGeneratorType, FrameType
from typing import Any

log = logging.getLogger("polyroute.ops")

TASK_FRAMES = 32


def install() -> bool:
    """Handle SIGUSR1 in the running loop until it closes (the dump must still work while the
    gateway shuts down). False where signals cannot be handled (not the main thread)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


def render() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}")
    # Tasks parked at the same place (a thousand requests waiting on upstreams) print once.
    stacks: dict[str, list[str]] = {}
    with contextlib.suppress(RuntimeError):  # no running loop
        for task in asyncio.all_tasks():
            where = "".join(
                f'  File "{f.f_code.co_filename}", line {f.f_lineno}, in {f.f_code.co_name}\n'
                for f in _awaiting(task.get_coro())
            )
            stacks.setdefault(where, []).append(task.get_name())
    for where, tasks in stacks.items():
        more = f" and {len(tasks) - 1} more at the same place" if len(tasks) > 1 else ""
        parts.append(f"--- task {tasks[0]}{more}\n{where}")
    return "\n".join(parts)


def _awaiting(coro: Any) -> list[FrameType]:
    """The frames from a task's coroutine down to the await it is parked on (Task.get_stack gives
    only the outermost frame of a suspended coroutine)."""
    frames: list[FrameType] = []
    for _ in range(2 * TASK_FRAMES):  # hops, not frames: bounded whatever the chain looks like
        if coro is None or len(frames) >= TASK_FRAMES:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            # `await agen.__anext__()` parks on an asend object that names its generator only to
            # the collector.
            inner = [r for r in gc.get_referents(coro) if isinstance(r, AsyncGeneratorType)]
            if not inner:
                break
            coro = inner[0]
            continue
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return frames


def dump() -> None:
    log.warning("stack dump (SIGUSR1)\n%s", render())
