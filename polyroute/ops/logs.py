"""Structured logs: one line per event (JSON or text), written by a thread, with secrets redacted.

The request path only builds a record and puts it on a bounded queue (`QueueHandler`); a
`QueueListener` thread formats it and writes it, so a slow or blocked stderr (a full pipe, a
stalled log shipper) never stalls the event loop. When the queue is full, records are dropped
and counted rather than waited for.

Every record passes the `REDACTOR` filter in that thread: the configured upstream API keys,
provider header values and the master key are replaced by `[redacted]` wherever they appear
(message, arguments, traceback, extra fields). It is a safety net: nothing should log a key.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import logging.handlers
import queue
import re
import signal
import sys
import threading
from collections.abc import Iterable
from typing import Any

import orjson

from polyroute.ops.current import CURRENT

REDACTED = "[redacted]"
# Shorter strings would mangle ordinary words; every vendor key is far longer.
MIN_SECRET = 8
QUEUE_SIZE = 100_000

# Record attributes that are not event fields (uvicorn adds an ANSI-coloured copy of its message).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class SecretRedactor(logging.Filter):
    """Replaces known secrets in every string of a record. Secrets are only ever added (a key
    rotated out by a reload stays redacted)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str | None]) -> None:
        new = {s for s in secrets if s and len(s) >= MIN_SECRET} - self._secrets
        if not new:
            return
        with self._lock:
            self._secrets |= new
            # Longest first, so a secret containing another is replaced whole.
            alts = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alts))

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def redact(self, text: str) -> str:
        p = self._pattern
        return text if p is None else p.sub(REDACTED, text)

    def _value(self, v: Any, p: re.Pattern[str]) -> Any:
        if isinstance(v, str):
            return p.sub(REDACTED, v)
        if isinstance(v, dict):
            return {k: self._value(x, p) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [self._value(x, p) for x in v]
        if isinstance(v, bytes | bytearray):
            return p.sub(REDACTED, bytes(v).decode("utf-8", "replace"))
        if v is None or isinstance(v, int | float | bool):
            return v
        return p.sub(REDACTED, str(v))

    def filter(self, record: logging.LogRecord) -> bool:
        p = self._pattern
        if p is None:
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        fields = [(k, v) for k, v in record.__dict__.items() if k not in _STANDARD]
        # One search over everything first: almost every record holds no secret at all.
        blob = "\0".join(
            [record.getMessage(), record.exc_text or "", record.stack_info or "", *(_text(v) for _, v in fields)]
        )
        if p.search(blob) is None:
            return True
        record.msg = p.sub(REDACTED, record.getMessage())
        record.args = None
        if record.exc_text:
            record.exc_text = p.sub(REDACTED, record.exc_text)
        if record.stack_info:
            record.stack_info = p.sub(REDACTED, record.stack_info)
        for k, v in fields:
            record.__dict__[k] = self._value(v, p)
        return True


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None or isinstance(v, int | float | bool):
        return ""
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


REDACTOR = SecretRedactor()


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JSONFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", "pid", ...extra fields, "exc"} on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._prefix}{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        out.update(extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extras(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        kv = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{head} {kv}{sep}{tail}"


class EnqueueHandler(logging.handlers.QueueHandler):
    """The request path's side: merge the message, note the request, enqueue, never wait."""

    def __init__(self, q: Any, limit: int = QUEUE_SIZE) -> None:
        super().__init__(q)
        self.limit = limit
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Arguments are merged now (they may change after the call returns) and a traceback is
        # rendered while its frames exist; all other formatting happens in the listener thread.
        copied = logging.LogRecord.__new__(logging.LogRecord)
        copied.__dict__.update(record.__dict__)  # copy.copy's generic path is several times slower
        record = copied
        record.msg = record.message = record.getMessage()
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        cur = CURRENT.get()
        if cur is not None and "request_id" not in record.__dict__:
            ctx = cur.ctx
            rid = ctx.request_id if ctx is not None else cur.request_id
            if rid is not None:
                record.request_id = rid
            if cur.client_request_id is not None:
                record.client_request_id = cur.client_request_id
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        # A SimpleQueue (C, no Python-level lock; a queue.Queue costs a third more per record
        # with its reader waking on it), bounded by a size check instead of maxsize.
        q: Any = self.queue
        if q.qsize() >= self.limit:
            self.dropped += 1
            return
        try:
            q.put_nowait(record)
        except queue.Full:
            self.dropped += 1


FLUSH_LIMIT = 2.0
_listeners: list[logging.handlers.QueueListener] = []
_handlers: list[EnqueueHandler] = []


def make_handler(format: str = "json", stream: Any = None) -> EnqueueHandler:
    """A handler for dictConfig (`"()": "polyroute.ops.logs.make_handler"`): records go through
    a bounded queue to a thread that formats, redacts and writes them to `stream` (stderr)."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(JSONFormatter() if format == "json" else TextFormatter())
    out.addFilter(REDACTOR)
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    handler = EnqueueHandler(q)
    # Thread and process names are in no line we write; skipping them makes each record cheaper.
    logging.logThreads = False
    logging.logMultiprocessing = False
    listener = logging.handlers.QueueListener(q, out, respect_handler_level=False)
    listener.start()
    _listeners.append(listener)
    _handlers.append(handler)
    _flush_before_dying_of(signal.SIGTERM)
    return handler


def _flush_before_dying_of(sig: int) -> None:
    """After a graceful stop uvicorn restores the handler it found and raises the signal again;
    by default that ends the process before atexit runs, and the queued shutdown lines (and any
    warning written while closing) were lost. uvicorn configures logging before it saves that
    handler, in the single process and in each worker alike, so this is the place to set it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(sig) == signal.SIG_DFL:
        signal.signal(sig, _flush_and_die)


def _flush_and_die(sig: int, frame: Any) -> None:
    flush_logs()
    signal.signal(sig, signal.SIG_DFL)
    signal.raise_signal(sig)


def dropped_records() -> int:
    return sum(h.dropped for h in _handlers)


@atexit.register
def flush_logs() -> None:
    """Write the lines still queued (the shutdown messages) and stop the writer threads; a stderr
    nobody reads (a full pipe) gets FLUSH_LIMIT seconds, not the power to keep the process alive."""
    while _listeners:
        listener = _listeners.pop()
        thread = listener._thread
        if thread is not None:
            listener.enqueue_sentinel()
            thread.join(FLUSH_LIMIT)
            listener._thread = None


def resolve_format(cli: str | None, configured: str | None) -> str:
    if cli:
        return cli
    if configured:
        return configured
    return "text" if sys.stderr.isatty() else "json"


def log_config(format: str, level: str) -> dict[str, Any]:
    """uvicorn's `log_config` (applied in the supervisor and in every worker process)."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"polyroute": {"()": "polyroute.ops.logs.make_handler", "format": format}},
        "root": {"handlers": ["polyroute"], "level": lvl},
        "loggers": {
            # uvicorn's loggers keep their levels (set from --log-level) but write through ours.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            # The access log is the point of a request log: --log-level does not silence it
            # (ops.logging.access_log: false does).
            "polyroute.access": {"level": "DEBUG" if lvl == "DEBUG" else "INFO", "propagate": True},
        },
    }
