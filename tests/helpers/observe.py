"""A policy that lets a test see each finished request's context, without sleeping."""

from __future__ import annotations

import threading

from polyroute.core.context import RequestContext
from polyroute.core.policy import Policy


class Recorder(Policy):
    def __init__(self) -> None:
        self.finished: list[RequestContext] = []
        self._cond = threading.Condition()

    async def after(self, ctx: RequestContext) -> None:
        with self._cond:
            self.finished.append(ctx)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RequestContext]:
        """Block until `count` requests have finished; fail the test if they do not in time."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.finished) >= count, timeout):
                raise AssertionError(f"only {len(self.finished)} of {count} requests finished in {timeout} s")
            return list(self.finished)
