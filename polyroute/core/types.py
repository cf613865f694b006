"""The canonical request, response and stream-event model.

Every inbound API (OpenAI, Anthropic) translates into these types and every provider adapter
translates out of them, so routing, limits, budgets, the ledger and evaluation are written once.

Content is a list of typed parts (close to Anthropic's block model, which is the richer one):
OpenAI's `tool` role messages become `ToolResult` parts, Anthropic's `tool_use` blocks and
OpenAI's `tool_calls` become `ToolCall` parts, reasoning becomes `Thinking` parts.

Usage semantics (documented in docs/usage-semantics.md):
- `input_tokens` counts every prompt token, including cache reads and cache writes
  (OpenAI's `prompt_tokens`; Anthropic's `input_tokens + cache_read + cache_creation`).
- `cached_input_tokens` and `cache_write_tokens` are subsets of `input_tokens`.
- `output_tokens` counts every generated token, reasoning included (OpenAI's `completion_tokens`).
- `reasoning_tokens` is a subset of `output_tokens`.
So cost = uncached input x input price + cached x cached price + writes x write price
+ output x output price, and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base for canonical types: slotted, typed, and cheap to build on the hot path."""


# --- content parts -------------------------------------------------------------------------


class TextPart(Struct, tag="text"):
    text: str
    # Anthropic prompt caching marker ({"type": "ephemeral", "ttl"?: ...}), passed through as is.
    cache_control: dict[str, Any] | None = None


class ImagePart(Struct, tag="image"):
    # Either a URL (http(s) or data:) or inline base64 data with its media type.
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    cache_control: dict[str, Any] | None = None


class ToolCall(Struct, tag="tool_call"):
    id: str
    name: str
    # JSON text, exactly as the model produced it: re-serialising could reorder keys and
    # break a vendor's signature or a client's stream assembly.
    arguments: str
    # Gemini thought signature attached to a function call, returned unchanged next turn.
    signature: str | None = None


class ToolResult(Struct, tag="tool_result"):
    tool_call_id: str
    content: list[TextPart | ImagePart]
    is_error: bool = False
    name: str | None = None  # Gemini's functionResponse needs the function name
    cache_control: dict[str, Any] | None = None


class Thinking(Struct, tag="thinking"):
    text: str
    # Vendor signature (Anthropic `signature`, Gemini `thoughtSignature`), returned unchanged.
    signature: str | None = None
    # Anthropic redacted thinking: opaque data returned unchanged; `text` is then empty.
    redacted_data: str | None = None


Part = TextPart | ImagePart | ToolCall | ToolResult | Thinking


class Message(Struct):
    role: Role
    content: list[Part]
    name: str | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


# --- request --------------------------------------------------------------------------------


class Tool(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(Struct):
    # auto: model decides; none: no tools; required: some tool; tool: the named one.
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class RequestOptions(Struct):
    """Per-request gateway controls (the `polyroute` body object or `x-polyroute-*` headers)."""

    timeout: float | None = None
    retries: int | None = None
    fallbacks: bool | None = None
    models: list[str] | None = None
    providers_allowed: list[str] | None = None
    providers_excluded: list[str] | None = None
    max_price_per_million: float | None = None
    tags: list[str] | None = None
    end_user: str | None = None
    sticky_key: str | None = None


class ChatRequest(Struct):
    model: str
    messages: list[Message]
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    # Anthropic's and Gemini's top-k sampling; providers without it drop it (a sampling hint).
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int = 1
    seed: int | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning_effort: ReasoningEffort | None = None
    # Explicit thinking budget (Anthropic `thinking.budget_tokens`); wins over reasoning_effort.
    thinking_budget: int | None = None
    stream: bool = False
    include_usage: bool = False
    options: RequestOptions | None = None
    metadata: dict[str, str] | None = None

    def has_images(self) -> bool:
        return any(isinstance(p, ImagePart) for m in self.messages for p in m.content)

    def thinking_tokens(self, budgets: Mapping[str, int | None]) -> int | None:
        """The thinking budget: the explicit one, else the vendor's budget for reasoning_effort."""
        if self.thinking_budget is not None:
            return self.thinking_budget
        if self.reasoning_effort is not None:
            return budgets.get(self.reasoning_effort)
        return None

    def prompt_text(self) -> str:
        """All user-visible prompt text, for token estimates and the learned router."""
        return "\n".join(m.text() for m in self.messages)


# --- response -------------------------------------------------------------------------------


class Usage(Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # True when the provider did not report usage and the gateway estimated it.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Choice(Struct):
    index: int
    message: Message
    finish_reason: FinishReason | None = None
    # The stop sequence that ended generation, when the vendor says which (Anthropic).
    stop_sequence: str | None = None
    logprobs: Any = None


class ChatResponse(Struct):
    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- streaming ------------------------------------------------------------------------------


class StreamStart(Struct, tag="start"):
    id: str
    model: str
    created: int
    # Input-side usage when the vendor reports it up front (Anthropic's message_start), so an
    # Anthropic-format client sees real input tokens in its own message_start. The final
    # UsageEvent still carries the complete usage; this one is informative only.
    usage: Usage | None = None


class TextDelta(Struct, tag="text"):
    text: str
    choice: int = 0


class ThinkingDelta(Struct, tag="thinking"):
    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None
    choice: int = 0


class ToolCallStart(Struct, tag="tool_start"):
    # `index` numbers the tool calls of one choice from 0, as OpenAI's deltas do.
    index: int
    id: str
    name: str
    choice: int = 0
    signature: str | None = None


class ToolCallDelta(Struct, tag="tool_delta"):
    index: int
    arguments: str
    choice: int = 0


class LogprobsDelta(Struct, tag="logprobs"):
    logprobs: Any
    choice: int = 0


class Finish(Struct, tag="finish"):
    reason: FinishReason
    stop_sequence: str | None = None
    choice: int = 0


class UsageEvent(Struct, tag="usage"):
    usage: Usage


class Flush(Struct, tag="flush"):
    """The upstream has nothing more buffered: a good moment to write to the client.

    Providers that read in batches (HTTP) emit it after the events of one network read, so the
    server writes one burst with one syscall instead of one per event. It carries no content;
    renderers never see it.
    """


StreamEvent = (
    StreamStart
    | TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | LogprobsDelta
    | Finish
    | UsageEvent
    | Flush
)


# --- embeddings -----------------------------------------------------------------------------


class EmbeddingRequest(Struct):
    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None
    options: RequestOptions | None = None


class EmbeddingResponse(Struct):
    model: str
    vectors: list[list[float]]
    usage: Usage
