"""The buffer-at-a-time SSE decoder: the event-stream rules, and the same events whatever the read
boundaries are (checked against a straightforward line-by-line reference)."""

from __future__ import annotations

import random

import pytest

from polyroute.transport import RemoteProtocolError, SSEDecoder
from polyroute.transport.sse import Event


def decode(*reads: bytes) -> list[Event]:
    d = SSEDecoder()
    out: list[Event] = []
    for r in reads:
        out.extend(d.feed(r))
    out.extend(d.flush())
    return out


def reference(stream: bytes) -> list[Event]:
    """Line-by-line, as the spec's pseudo-code reads (plus the final-event flush)."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out: list[Event] = []
    event: str | None = None
    data: list[bytes] | None = None
    for line in lines:
        if not line:
            if data is not None:
                out.append((event, b"\n".join(data)))
            event, data = None, None
            continue
        if line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data = [*(data or []), value]
        elif name == b"event":
            event = value.decode()
    if data is not None:
        out.append((event, b"\n".join(data)))
    return out


def test_one_line_events() -> None:
    assert decode(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [(None, b'{"a":1}'), (None, b"[DONE]")]


def test_event_names_multiline_data_comments_and_ignored_fields() -> None:
    stream = (
        b": keep-alive comment\n\n"
        b"event: message_start\ndata: {\"x\":1}\n\n"
        b"id: 7\nretry: 100\ndata: line one\ndata:line two\ndata\n\n"
        b"event: ping\n\n"  # no data: not dispatched
    )
    assert decode(stream) == [("message_start", b'{"x":1}'), (None, b"line one\nline two\n")]


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending(eol: bytes) -> None:
    stream = eol.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode(stream) == [("e", b"a\nb"), (None, b"c")]


def test_crlf_split_across_reads() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [(None, b"a"), (None, b"b")]


def test_bom_and_unterminated_last_event() -> None:
    assert decode(b"\xef\xbb\xbfdata: first\n\ndata: last\n") == [(None, b"first"), (None, b"last")]


def test_one_read_gives_every_complete_event_and_keeps_the_rest() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == [(None, b"1"), (None, b"2")]
    assert d.feed(b"3\n") == []
    assert d.feed(b"\n") == [(None, b"33")]


def test_large_event_in_many_reads() -> None:
    payload = b"x" * 200_000
    stream = b"data: " + payload + b"\n\n"
    reads = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    assert decode(*reads) == [(None, payload)]


def test_event_size_is_bounded() -> None:
    d = SSEDecoder(max_event_size=1000)
    with pytest.raises(RemoteProtocolError):
        for _ in range(20):
            d.feed(b"data: " + b"y" * 100)


def random_stream(rng: random.Random) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        eol = rng.choice([b"\n", b"\r\n", b"\r"])
        lines: list[bytes] = []
        if rng.random() < 0.2:
            lines.append(b": comment")
        if rng.random() < 0.4:
            lines.append(b"event: " + rng.choice([b"delta", b"message_stop", b"ping"]))
        for _ in range(rng.randint(0, 3)):
            value = bytes(rng.choice(b"abc {}\":,") for _ in range(rng.randint(0, 12)))
            lines.append(rng.choice([b"data: ", b"data:"]) + value)
        if rng.random() < 0.1:
            lines.append(b"id: 1")
        parts.append(eol.join(lines) + eol + eol)
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_any_read_boundaries_give_the_reference_events(seed: int) -> None:
    rng = random.Random(seed)
    stream = random_stream(rng)
    expected = reference(stream)
    # Whole, byte by byte, and random cuts.
    assert decode(stream) == expected
    assert decode(*[stream[i : i + 1] for i in range(len(stream))]) == expected
    cuts = sorted(rng.sample(range(1, len(stream)), min(6, len(stream) - 1))) if len(stream) > 1 else []
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode(*pieces) == expected
