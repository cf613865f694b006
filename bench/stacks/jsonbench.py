"""JSON library micro-benchmark on the gateway's real payloads: orjson vs msgspec (untyped and typed).

    .venv/bin/python bench/stacks/jsonbench.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import payloads


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None = None
    refusal: str | None = None


class Choice(msgspec.Struct, omit_defaults=True):
    index: int
    message: Message
    finish_reason: str | None = None
    logprobs: Any = None


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None
    completion_tokens_details: dict[str, int] | None = None


class Completion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct, omit_defaults=True):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: Any = None


class Chunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None


def bench(fn: Any, n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best / 1000  # µs


def main() -> None:
    resp = payloads.chat_completion()
    chunk = payloads.sse_stream(1).split(b"\n\n")[1][6:]
    req = payloads.chat_request()
    enc = msgspec.json.Encoder()
    dec_any = msgspec.json.Decoder()
    dec_c = msgspec.json.Decoder(Completion)
    dec_k = msgspec.json.Decoder(Chunk)
    rows = {
        "request round trip (223 B)": {
            "json (stdlib)": lambda: json.dumps(json.loads(req)),
            "orjson": lambda: orjson.dumps(orjson.loads(req)),
            "msgspec untyped": lambda: enc.encode(dec_any.decode(req)),
        },
        "completion round trip (491 B)": {
            "json (stdlib)": lambda: json.dumps(json.loads(resp)),
            "orjson": lambda: orjson.dumps(orjson.loads(resp)),
            "msgspec untyped": lambda: enc.encode(dec_any.decode(resp)),
            "msgspec typed Struct": lambda: enc.encode(dec_c.decode(resp)),
        },
        "stream chunk round trip (~210 B)": {
            "json (stdlib)": lambda: json.dumps(json.loads(chunk)),
            "orjson": lambda: orjson.dumps(orjson.loads(chunk)),
            "msgspec untyped": lambda: enc.encode(dec_any.decode(chunk)),
            "msgspec typed Struct": lambda: enc.encode(dec_k.decode(chunk)),
        },
    }
    print("| payload | library | µs per decode+encode |\n|---|---|---:|")
    for what, libs in rows.items():
        for lib, fn in libs.items():
            print(f"| {what} | {lib} | {bench(fn, 20000):.2f} |")


if __name__ == "__main__":
    main()
