"""Host name resolution through the event loop (getaddrinfo in its executor), cached briefly.

Provider hosts are few and stable, so a short TTL removes a thread-pool round trip from every new
connection while still following DNS changes within a minute. Concurrent look-ups of one name share
one call.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

Address = tuple[int, str]  # (family, numeric host)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Resolver:
    __slots__ = ("_cache", "_inflight", "ttl")

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[Address]]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Future[list[Address]]] = {}

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Addresses to try in order; raises OSError (socket.gaierror) when the name does not resolve."""
        if is_ip_literal(host):
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
        key = (host, port)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._lookup(host, port))
            self._inflight[key] = fut
            fut.add_done_callback(lambda f: self._done(key, f))
        # shield: one caller giving up (cancelled) must not cancel the look-up the others wait for.
        return await asyncio.shield(fut)

    def _done(self, key: tuple[str, int], fut: asyncio.Future[list[Address]]) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled():
            fut.exception()  # retrieved here, so a failure every waiter abandoned is not reported as lost

    async def _lookup(self, host: str, port: int) -> list[Address]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        seen: list[Address] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            addr = (int(family), str(sockaddr[0]))
            if addr not in seen:
                seen.append(addr)
        if not seen:
            raise socket.gaierror(f"no addresses for {host}")
        self._cache[(host, port)] = (time.monotonic() + self.ttl, seen)
        return seen

    def forget(self, host: str, port: int) -> None:
        """Drop a cached answer (none of its addresses accepted a connection)."""
        self._cache.pop((host, port), None)
