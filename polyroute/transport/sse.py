"""Server-sent events, parsed a whole buffer at a time.

A readline-based reader costs one Python iteration (and usually one allocation) per *line*; here
one read becomes one `split` in C, and the usual one-line event (`data: {...}`) takes a slice.
`feed` returns every complete event in the buffer at once, so a consumer that handles events in
batches pays the per-event Python overhead only once per read.

Follows the WHATWG event-stream rules a gateway needs: lines end in CRLF, LF or CR (also split
across reads); an event ends at a blank line; `data:` lines join with "\\n"; one space after the
colon is dropped; `event:` names the event; comments (`:`), `id:` and `retry:` are ignored; a
leading BOM is dropped; an event without data lines is not dispatched. Unlike the spec, an
unterminated final event is still delivered at the end of the stream (`flush`), as the gateway's
earlier reader did, because some OpenAI-compatible servers omit the last blank line.
"""

from __future__ import annotations

from .errors import RemoteProtocolError

Event = tuple[str | None, bytes]

_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    __slots__ = ("_max", "_pending", "_size", "_started", "_tail")

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self._tail = b""
        # Reads that cannot hold an event boundary wait here unjoined (no quadratic copying when
        # one large event arrives in many reads).
        self._pending: list[bytes] = []
        self._size = 0
        self._started = False
        self._max = max_event_size

    def feed(self, data: bytes) -> list[Event]:
        if not self._started:
            if not data:
                return []
            self._started = True
            if data.startswith(_BOM):
                data = data[3:]
        if self._pending:
            if not self._may_end_event(data):
                return self._hold(data)
            data = self._tail + b"".join(self._pending) + data
            self._pending.clear()
            self._size = 0
            self._tail = b""
        elif self._tail:
            if not self._may_end_event(data):
                return self._hold(data)
            data = self._tail + data
            self._tail = b""
        if b"\r" in data:
            hold = data.endswith(b"\r")  # maybe the first half of a CRLF: decide on the next read
            if hold:
                data = data[:-1]
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            blocks = data.split(b"\n\n")
            self._tail = blocks.pop() + (b"\r" if hold else b"")
        else:
            blocks = data.split(b"\n\n")
            self._tail = blocks.pop()
        if len(self._tail) > self._max:
            raise RemoteProtocolError(f"a server-sent event is larger than {self._max} bytes")
        out: list[Event] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append((None, block[6:]))
            else:
                _parse_block(block, out)
        return out

    def _may_end_event(self, data: bytes) -> bool:
        last = (self._pending[-1] if self._pending else self._tail)[-1:]
        return b"\n\n" in data or b"\r" in data or (last in (b"\n", b"\r") and data[:1] in (b"\n", b"\r"))

    def _hold(self, data: bytes) -> list[Event]:
        if data:
            self._pending.append(data)
            self._size += len(data)
            if self._size > self._max:
                raise RemoteProtocolError(f"a server-sent event is larger than {self._max} bytes")
        return []

    def flush(self) -> list[Event]:
        """The unterminated last event, if the stream ended without a blank line."""
        rest = self._tail + b"".join(self._pending)
        self._tail, self._pending, self._size = b"", [], 0
        rest = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip(b"\n")
        out: list[Event] = []
        for block in rest.split(b"\n\n") if rest else ():
            _parse_block(block, out)
        return out


def _parse_block(block: bytes, out: list[Event]) -> None:
    event: str | None = None
    data: list[bytes] | None = None
    for line in block.split(b"\n"):
        if not line:
            # A blank line inside a block (three or more newlines in a row) ends an event too.
            if data is not None:
                out.append((event, b"\n".join(data)))
            event, data = None, None
            continue
        if line[:1] == b":":
            continue
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if data is None:
                data = [value]
            else:
                data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if data is not None:
        out.append((event, b"\n".join(data)))
