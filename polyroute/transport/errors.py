"""The client's exceptions: few, so callers map them to gateway errors in one place.

They derive from ConnectionError (and TimeoutError for the timeouts) on purpose: provider adapters
already catch `ConnectionError | TimeoutError` around stream iteration, and that keeps working for
both this client and the aiohttp fallback without each adapter learning a new exception type.
"""

from __future__ import annotations


class TransportError(ConnectionError):
    """Anything that went wrong between the gateway and the provider at the HTTP level."""


class ConnectError(TransportError):
    """No connection: DNS failure, refused, unreachable, TLS handshake or certificate failure."""


class ConnectTimeout(ConnectError, TimeoutError):
    """DNS + TCP connect + TLS handshake took longer than the connect timeout."""


class ReadTimeout(TransportError, TimeoutError):
    """The server sent nothing for longer than the idle read timeout (headers or body)."""


class RemoteProtocolError(TransportError):
    """The server broke HTTP/1.1: malformed response, or the body ended early."""


class ConnectionReset(RemoteProtocolError):
    """The server closed or reset the connection before the response was complete."""


class BodyTooLarge(TransportError):
    """A buffered (non-streaming) response body exceeded the client's max_body_size."""


class PoolClosed(TransportError):
    """The client was closed; no new requests."""
