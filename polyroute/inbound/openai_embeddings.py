"""OpenAI Embeddings <-> canonical model."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from polyroute.core import types as t
from polyroute.core.errors import InvalidRequest
from polyroute.inbound import openai_wire as w
from polyroute.inbound.validation import decode_body

MAX_INPUTS = 2048


def parse_request(body: bytes) -> tuple[t.EmbeddingRequest, str]:
    """The canonical request and the encoding the client asked for ('float' or 'base64')."""
    b = decode_body(body, w.EmbeddingBody)
    inputs = [b.input] if isinstance(b.input, str) else b.input
    if not inputs:
        raise InvalidRequest("'input' must not be empty", param="input")
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(f"'input' takes at most {MAX_INPUTS} items", param="input")
    if not all(isinstance(x, str) for x in inputs):
        raise InvalidRequest(
            "'input' must be a string or a list of strings; token arrays are not supported by this gateway",
            param="input",
        )
    if any(x == "" for x in inputs):
        raise InvalidRequest("'input' must not contain empty strings", param="input")
    if b.dimensions is not None and b.dimensions < 1:
        raise InvalidRequest("'dimensions' must be at least 1", param="dimensions")
    req = t.EmbeddingRequest(
        model=b.model, inputs=inputs, dimensions=b.dimensions, user=b.user, options=b.polyroute
    )
    return req, b.encoding_format or "float"


def render_response(resp: t.EmbeddingResponse, model: str, encoding: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for i, v in enumerate(resp.vectors):
        emb: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() if encoding == "base64" else v
        data.append({"object": "embedding", "index": i, "embedding": emb})
    u = resp.usage
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": u.input_tokens, "total_tokens": u.input_tokens},
    }
