"""Canned OpenAI/Anthropic request and response bodies shared by every benchmark row.

Kept deliberately realistic in size (a short chat turn, usage block, 500-chunk stream) so JSON
parsing cost is representative of a real gateway hop rather than of an empty body.
"""

from __future__ import annotations

import orjson

UPSTREAM_MODEL = "gpt-4o-mini"
GATEWAY_MODEL = "bench-model"
STREAM_MODEL = "bench-stream"
STREAM_SHORT_MODEL = "bench-stream-short"
STREAM_CHUNKS_LONG = 500
STREAM_CHUNKS_SHORT = 20

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Say hello in one short sentence, then list three primary colours."},
]


def chat_request(model: str = GATEWAY_MODEL, stream: bool = False, short: bool = False) -> bytes:
    """OpenAI chat body; streams name the stream model (`short` picks the 20-chunk one) unless told."""
    if stream and model == GATEWAY_MODEL:
        model = STREAM_SHORT_MODEL if short else STREAM_MODEL
    body: dict[str, object] = {"model": model, "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def messages_request(model: str = GATEWAY_MODEL, stream: bool = False) -> bytes:
    """Anthropic Messages API body (POST /v1/messages)."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 64,
        "system": MESSAGES[0]["content"],
        "messages": [MESSAGES[1]],
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def chat_completion() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000001",
            "object": "chat.completion",
            "created": 1_731_000_000,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello there! Three primary colours: red, yellow and blue.",
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 31,
                "completion_tokens": 15,
                "total_tokens": 46,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )


def sse_stream(chunks: int) -> bytes:
    """An OpenAI chat.completion.chunk SSE stream: role chunk, `chunks` content chunks, stop, usage, [DONE]."""
    base = {
        "id": "chatcmpl-bench0000000000000000000002",
        "object": "chat.completion.chunk",
        "created": 1_731_000_000,
        "model": UPSTREAM_MODEL,
        "system_fingerprint": "fp_bench",
    }
    events: list[bytes] = []

    def ev(delta: dict[str, object], finish: str | None = None, usage: object = None) -> None:
        obj = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if usage is not None:
            obj = dict(base, choices=[], usage=usage)
        events.append(b"data: " + orjson.dumps(obj) + b"\n\n")

    ev({"role": "assistant", "content": ""})
    for i in range(chunks):
        ev({"content": f"tok{i} "})
    ev({}, "stop")
    ev({}, usage={"prompt_tokens": 31, "completion_tokens": chunks, "total_tokens": 31 + chunks})
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)
