"""Content-Encoding decoders (gzip, deflate), incremental so they work on streamed bodies."""

from __future__ import annotations

import zlib

from .errors import RemoteProtocolError

# Only what the client advertises in Accept-Encoding; anything else is the server's mistake.
ACCEPT_ENCODING = "gzip, deflate"


class Decoder:
    __slots__ = ("_encoding", "_first", "_obj")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._first = True
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)

    def decompress(self, data: bytes) -> bytes:
        try:
            if self._encoding == "gzip":
                return self._gzip(data)
            return self._deflate(data)
        except zlib.error as exc:
            raise RemoteProtocolError(f"cannot decode the {self._encoding} response body: {exc}") from None

    def _gzip(self, data: bytes) -> bytes:
        out = self._obj.decompress(data)
        # A gzip body may hold several members back to back (RFC 1952 2.2): restart on the rest.
        while self._obj.eof and self._obj.unused_data:
            rest = self._obj.unused_data
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._obj.decompress(rest)
        return out

    def _deflate(self, data: bytes) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(data)
            except zlib.error:
                # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate.
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data)

    def flush(self) -> bytes:
        """The tail at the end of the body; a gzip body that stops mid-stream is an error."""
        try:
            out = self._obj.flush()
        except zlib.error as exc:
            raise RemoteProtocolError(f"cannot decode the {self._encoding} response body: {exc}") from None
        if self._encoding == "gzip" and not self._obj.eof:
            raise RemoteProtocolError("the gzip response body is truncated")
        return out


def decoder_for(value: bytes) -> Decoder | None:
    encoding = value.decode("latin-1").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return Decoder("gzip")
    if encoding == "deflate":
        return Decoder("deflate")
    if encoding in ("", "identity"):
        return None
    raise RemoteProtocolError(f"the server used Content-Encoding {encoding!r}, which was not offered")
