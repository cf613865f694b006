"""Structured logs: formatters, the secret-redacting filter, and a queue that never blocks."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from polyroute.ops import logs
from polyroute.ops.current import CURRENT, Current
from polyroute.ops.logs import EnqueueHandler, JSONFormatter, SecretRedactor, TextFormatter, make_handler

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"upstream said: bad key {KEY}")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    r = logging.LogRecord("polyroute.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_json_formatter_one_object_per_line_with_extras_and_traceback() -> None:
    line = JSONFormatter().format(record("hello %s", "world", exc=True, model="m", tokens=3))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["msg"] == "hello world" and obj["level"] == "warning" and obj["logger"] == "polyroute.test"
    assert obj["model"] == "m" and obj["tokens"] == 3 and isinstance(obj["pid"], int)
    assert obj["ts"].endswith("Z") and "T" in obj["ts"]
    assert "RuntimeError" in obj["exc"]


def test_text_formatter_appends_fields() -> None:
    line = TextFormatter().format(record("GET %s", "/x", status=200, model=None))
    assert line.endswith("polyroute.test: GET /x status=200")


def test_redactor_removes_secrets_everywhere() -> None:
    red = SecretRedactor()
    red.add([KEY, None, "short"])  # None and short strings are ignored
    r = record("calling with %s", KEY, exc=True, headers={"authorization": f"Bearer {KEY}"}, note=[KEY], raw=KEY.encode())
    assert red.filter(r)
    text = JSONFormatter().format(r)
    assert KEY not in text
    assert text.count(logs.REDACTED) >= 5
    # Short strings would mangle ordinary words: never redacted.
    r2 = record("a short word")
    red.filter(r2)
    assert r2.getMessage() == "a short word"


def test_redactor_keeps_rotated_out_keys() -> None:
    red = SecretRedactor()
    red.add(["old-key-0123456789"])
    red.add(["new-key-0123456789"])
    assert red.redact("old-key-0123456789 new-key-0123456789") == f"{logs.REDACTED} {logs.REDACTED}"


def test_redactor_prefers_the_longest_secret() -> None:
    red = SecretRedactor()
    red.add(["abcdefgh", "abcdefgh-and-more"])
    assert red.redact("x abcdefgh-and-more y") == f"x {logs.REDACTED} y"


class BlockingStream(io.StringIO):
    """A sink whose writes wait until released: a full pipe, a stalled log shipper."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, s: str) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().write(s)


@pytest.fixture
def isolated_logger() -> Iterator[logging.Logger]:
    lg = logging.getLogger("polyroute.test.isolated")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    try:
        yield lg
    finally:
        for h in list(lg.handlers):
            lg.removeHandler(h)


def _stop_listeners() -> None:
    while logs._listeners:
        logs._listeners.pop().stop()


def test_logging_never_waits_for_a_blocked_sink(isolated_logger: logging.Logger) -> None:
    sink = BlockingStream()
    handler = make_handler("json", stream=sink)
    isolated_logger.addHandler(handler)
    done = threading.Event()

    def log_many() -> None:
        for i in range(500):
            isolated_logger.info("line %d", i)
        done.set()

    t = threading.Thread(target=log_many)
    t.start()
    # The writer thread is stuck in the sink, yet every logging call returns.
    assert sink.entered.wait(10)
    assert done.wait(10), "a logging call blocked on the sink"
    sink.release.set()
    t.join(10)
    _stop_listeners()
    lines = sink.getvalue().splitlines()
    assert len(lines) == 500 and json.loads(lines[-1])["msg"] == "line 499"


def test_flush_at_exit_gives_a_blocked_sink_a_bounded_time(
    isolated_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "FLUSH_LIMIT", 0.2)
    monkeypatch.setattr(logs, "_listeners", [])  # only this test's writer thread is flushed
    sink = BlockingStream()
    isolated_logger.addHandler(make_handler("json", stream=sink))
    isolated_logger.info("the last line")
    assert sink.entered.wait(10)
    flusher = threading.Thread(target=logs.flush_logs)
    flusher.start()
    flusher.join(10)
    returned = not flusher.is_alive()
    sink.release.set()
    assert returned, "flush_logs waited for a sink nobody reads"
    assert logs._listeners == []


def test_flush_at_exit_writes_what_is_queued(isolated_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_listeners", [])
    out = io.StringIO()
    isolated_logger.addHandler(make_handler("json", stream=out))
    for i in range(200):
        isolated_logger.info("line %d", i)
    logs.flush_logs()
    lines = out.getvalue().splitlines()
    assert len(lines) == 200 and json.loads(lines[-1])["msg"] == "line 199"


def test_full_queue_drops_and_counts_instead_of_waiting() -> None:
    import queue

    h = EnqueueHandler(queue.Queue(2))
    for _ in range(5):
        h.handle(record("x"))
    assert h.dropped == 3


def test_handler_adds_the_request_ids_and_redacts(isolated_logger: logging.Logger) -> None:
    logs.REDACTOR.add([KEY])
    out = io.StringIO()
    isolated_logger.addHandler(make_handler("json", stream=out))
    cur = Current({}, "client-7")
    cur.request_id = "req_abc"
    token = CURRENT.set(cur)
    try:
        isolated_logger.warning("upstream rejected key %s", KEY)
    finally:
        CURRENT.reset(token)
    _stop_listeners()
    obj = json.loads(out.getvalue())
    assert obj["request_id"] == "req_abc" and obj["client_request_id"] == "client-7"
    assert KEY not in out.getvalue() and logs.REDACTED in obj["msg"]


def test_resolve_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert logs.resolve_format("text", "json") == "text"
    assert logs.resolve_format(None, "text") == "text"
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert logs.resolve_format(None, None) == "json"
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert logs.resolve_format(None, None) == "text"


def test_log_config_is_a_valid_dict_config() -> None:
    import logging.config

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    access = logging.getLogger("polyroute.access")
    saved_access = access.level
    try:
        logging.config.dictConfig(logs.log_config("json", "warning"))
        assert any(isinstance(h, EnqueueHandler) for h in root.handlers)
        assert root.level == logging.WARNING
        # --log-level warning does not silence the access log
        assert access.getEffectiveLevel() == logging.INFO
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        access.setLevel(saved_access)
        _stop_listeners()
