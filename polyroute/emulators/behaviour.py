"""What an emulator answers: the `Behaviour` record and the controller that picks one per request.

A behaviour is chosen once per API request (admin routes and model listings excluded), in this order:
1. the FIFO queue (`enqueue`), one behaviour per request;
2. the seeded failure rate (`set_failure_rate`): with probability `rate` the failure behaviour;
3. the default behaviour (`set_default`), which starts as `Behaviour()` (echo).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

MalformedKind = Literal["invalid_json", "truncated_sse"]
MALFORMED_KINDS: tuple[str, ...] = ("invalid_json", "truncated_sse")


class BehaviourError(ValueError):
    """A behaviour description (usually from the admin HTTP endpoint) is not valid."""


@dataclass(frozen=True)
class ToolCall:
    """A tool call the emulated model makes: function `name` with JSON `arguments`."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "id": self.id}

    @classmethod
    def from_dict(cls, data: Any) -> ToolCall:
        if isinstance(data, ToolCall):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise BehaviourError(f"a tool call needs a string 'name': {data!r}")
        unknown = set(data) - {"name", "arguments", "id"}
        if unknown:
            raise BehaviourError(f"unknown tool call fields: {sorted(unknown)}")
        arguments = data.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise BehaviourError("tool call 'arguments' must be an object")
        call_id = data.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise BehaviourError("tool call 'id' must be a string")
        return cls(name=data["name"], arguments=arguments, id=call_id)


@dataclass(frozen=True)
class Behaviour:
    """One answer recipe. Every field has a neutral default; `Behaviour()` echoes the last user text.

    Answer:
      text: canned answer; None means echo (`echo_prefix` + last user text).
      tool_calls: answer with these tool calls (text is added only when `text` is also set).
      forced_tool_arguments: arguments used when the request forces a tool (default `{}`).
      json_output: object returned as text when the request asks for JSON output
        (default: an instance built from the request's schema, or {"echo": <user text>}).
      thinking: reasoning text (Anthropic thinking block, Gemini thought part, OpenAI reasoning tokens).
      max_tokens_reached: stop as if the token limit was hit (finish_reason length / max_tokens).
      cached_tokens / cache_creation_tokens: override the reported cache usage.
    Streaming:
      chunks: split the answer text (and each tool call's JSON arguments) into this many pieces
        (default: one piece per word; arguments in pieces of 8 characters).
      chunk_delay: seconds between stream events.
      first_token_delay: seconds after the response headers, before the first event
        (non-streaming: added to the wait before the response).
      headers_delay: seconds before anything is sent.
    Failures:
      status: answer with this HTTP error status in the vendor's error format.
      error_type / error_message: override the vendor error type and message.
      retry_after: seconds put in `Retry-After` (and `retry-after-ms` when not a whole number).
      error_after: with `status`, stream normally and send the vendor's in-stream error event after
        this many events instead of an HTTP error.
      disconnect_after: abort the TCP connection after this many stream events (non-streaming:
        before any response byte).
      malformed: "invalid_json" (a `data:` line that is not JSON / a truncated JSON body) or
        "truncated_sse" (an event cut in the middle, then a clean end of body), after
        `malformed_after` good events.
      hang: never answer (until the emulator stops).
    """

    text: str | None = None
    echo_prefix: str = "echo: "
    tool_calls: Sequence[ToolCall] = ()
    forced_tool_arguments: dict[str, Any] | None = None
    json_output: Any = None
    thinking: str | None = None
    max_tokens_reached: bool = False
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    chunks: int | None = None
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0
    headers_delay: float = 0.0
    status: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    error_after: int | None = None
    disconnect_after: int | None = None
    malformed: MalformedKind | None = None
    malformed_after: int = 1
    hang: bool = False

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; a tuple keeps the record immutable.
        object.__setattr__(self, "tool_calls", tuple(ToolCall.from_dict(c) for c in self.tool_calls))
        _check(self)

    def replace(self, **changes: Any) -> Behaviour:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Behaviour:
        if isinstance(data, Behaviour):
            return data
        if not isinstance(data, dict):
            raise BehaviourError(f"a behaviour must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise BehaviourError(f"unknown behaviour fields: {sorted(unknown)}")
        values = dict(data)
        calls = values.get("tool_calls") or []
        if not isinstance(calls, list):
            raise BehaviourError("'tool_calls' must be a list")
        values["tool_calls"] = tuple(ToolCall.from_dict(c) for c in calls)
        try:
            return cls(**values)
        except TypeError as exc:
            raise BehaviourError(str(exc)) from exc

    # Shorthands for the common failure recipes.
    @classmethod
    def error(cls, status: int, message: str | None = None, *, retry_after: float | None = None,
              error_type: str | None = None) -> Behaviour:
        return cls(status=status, error_message=message, retry_after=retry_after, error_type=error_type)

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Behaviour:
        return cls(status=429, retry_after=retry_after)

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | None = None) -> Behaviour:
        return cls(tool_calls=(ToolCall(name, arguments or {}),))


def _check(b: Behaviour) -> None:
    def non_negative(name: str, value: float | int | None) -> None:
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise BehaviourError(f"'{name}' must be a non-negative number")

    for name in ("chunk_delay", "first_token_delay", "headers_delay", "retry_after", "error_after",
                 "disconnect_after", "malformed_after", "cached_tokens", "cache_creation_tokens"):
        non_negative(name, getattr(b, name))
    if b.chunks is not None and (not isinstance(b.chunks, int) or b.chunks < 1):
        raise BehaviourError("'chunks' must be an integer >= 1")
    if b.status is not None and (not isinstance(b.status, int) or not 400 <= b.status <= 599):
        raise BehaviourError("'status' must be an HTTP error status (400-599)")
    if b.error_after is not None and b.status is None:
        raise BehaviourError("'error_after' needs 'status' (which error to send in the stream)")
    if b.malformed is not None and b.malformed not in MALFORMED_KINDS:
        raise BehaviourError(f"'malformed' must be one of {MALFORMED_KINDS}")
    if b.text is not None and not isinstance(b.text, str):
        raise BehaviourError("'text' must be a string")
    if b.thinking is not None and not isinstance(b.thinking, str):
        raise BehaviourError("'thinking' must be a string")


@dataclass(frozen=True)
class FailureRate:
    rate: float
    seed: int
    behaviour: Behaviour


class BehaviourController:
    """Thread-safe: tests change behaviours from their thread while the server loop reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default = Behaviour()
        self._queue: deque[Behaviour] = deque()
        self._failure: FailureRate | None = None
        self._rng = random.Random(0)

    def set_default(self, behaviour: Behaviour | None) -> None:
        with self._lock:
            self._default = behaviour or Behaviour()

    def enqueue(self, *behaviours: Behaviour, times: int = 1) -> None:
        if times < 1:
            raise BehaviourError("'times' must be >= 1")
        with self._lock:
            for _ in range(times):
                self._queue.extend(behaviours)

    def clear_queue(self) -> None:
        with self._lock:
            self._queue.clear()

    def set_failure_rate(self, rate: float, *, seed: int = 0, behaviour: Behaviour | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise BehaviourError("failure rate must be between 0 and 1")
        with self._lock:
            if rate == 0.0:
                self._failure = None
                return
            self._failure = FailureRate(rate, seed, behaviour or Behaviour(status=503))
            self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._default = Behaviour()
            self._queue.clear()
            self._failure = None
            self._rng = random.Random(0)

    def next(self) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._failure is not None and self._rng.random() < self._failure.rate:
                return self._failure.behaviour
            return self._default

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            failure = None
            if self._failure is not None:
                failure = {"rate": self._failure.rate, "seed": self._failure.seed,
                           "behaviour": self._failure.behaviour.to_dict()}
            return {"default": self._default.to_dict(), "queue": [b.to_dict() for b in self._queue],
                    "failure_rate": failure}

    def apply_admin(self, body: Any) -> None:
        """Apply a `POST /_emulator/behaviour` body; see the module README for its keys."""
        if not isinstance(body, dict):
            raise BehaviourError("the body must be a JSON object")
        unknown = set(body) - {"default", "enqueue", "times", "failure_rate", "clear_queue"}
        if unknown:
            raise BehaviourError(f"unknown keys: {sorted(unknown)}")
        # Validate everything before changing anything, so a bad body changes nothing.
        default: Behaviour | None = None
        if "default" in body and body["default"] is not None:
            default = Behaviour.from_dict(body["default"])
        queued: list[Behaviour] = []
        if "enqueue" in body:
            items = body["enqueue"]
            if not isinstance(items, list):
                raise BehaviourError("'enqueue' must be a list of behaviours")
            queued = [Behaviour.from_dict(item) for item in items]
        times = body.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise BehaviourError("'times' must be an integer >= 1")
        failure: tuple[float, int, Behaviour | None] | None = None
        if "failure_rate" in body:
            spec = body["failure_rate"]
            if spec is None:
                failure = (0.0, 0, None)
            else:
                failure = _parse_failure(spec)
        if body.get("clear_queue"):
            self.clear_queue()
        if "default" in body:
            self.set_default(default)
        if queued:
            self.enqueue(*queued, times=times)
        if failure is not None:
            self.set_failure_rate(failure[0], seed=failure[1], behaviour=failure[2])


def _parse_failure(spec: Any) -> tuple[float, int, Behaviour | None]:
    if not isinstance(spec, dict):
        raise BehaviourError("'failure_rate' must be an object {rate, seed?, behaviour?} or null")
    unknown = set(spec) - {"rate", "seed", "behaviour"}
    if unknown:
        raise BehaviourError(f"unknown failure_rate keys: {sorted(unknown)}")
    rate = spec.get("rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise BehaviourError("'failure_rate.rate' must be a number between 0 and 1")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BehaviourError("'failure_rate.seed' must be an integer")
    behaviour = None
    if spec.get("behaviour") is not None:
        behaviour = Behaviour.from_dict(spec["behaviour"])
    return float(rate), cast(int, seed), behaviour
