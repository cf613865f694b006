"""polyroute's HTTP/1.1 client for provider calls (asyncio + httptools), and the small `Upstream`
interface that lets a provider use it or aiohttp (proxies). See client.py for why it exists."""

from .client import HTTPClient, default_ssl_context
from .connection import Response
from .errors import (
    BodyTooLarge,
    ConnectError,
    ConnectionReset,
    ConnectTimeout,
    PoolClosed,
    ReadTimeout,
    RemoteProtocolError,
    TransportError,
)
from .headers import Headers
from .sse import SSEDecoder
from .upstream import (
    AiohttpUpstream,
    BufferedResponse,
    ClientKind,
    StreamResponse,
    Upstream,
    open_upstream,
)

__all__ = [
    "AiohttpUpstream",
    "BodyTooLarge",
    "BufferedResponse",
    "ClientKind",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionReset",
    "HTTPClient",
    "Headers",
    "PoolClosed",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "SSEDecoder",
    "StreamResponse",
    "TransportError",
    "Upstream",
    "default_ssl_context",
    "open_upstream",
]
