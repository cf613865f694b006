"""Anthropic Messages request schema, as the inbound `/v1/messages` API accepts it.

Decoded with msgspec straight from the request bytes (see openai_wire.py for why). Unknown fields
are ignored, as newer SDKs send fields an older gateway does not know; unknown content block
types are rejected with the block's path, since silently dropping content would change the prompt.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from polyroute.inbound.openai_wire import PolyrouteOptions


class W(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


CacheControl = dict[str, Any]


class Base64Source(W, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLSource(W, tag_field="type", tag="url"):
    url: str


class FileSource(W, tag_field="type", tag="file"):
    file_id: str


class TextSource(W, tag_field="type", tag="text"):
    data: str
    media_type: str | None = None


ImageSource = Base64Source | URLSource | FileSource


class TextBlock(W, tag_field="type", tag="text"):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(W, tag_field="type", tag="image"):
    source: ImageSource
    cache_control: CacheControl | None = None


class ToolUseBlock(W, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(W, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(W, tag_field="type", tag="thinking"):
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(W, tag_field="type", tag="redacted_thinking"):
    data: str


# Known block types the gateway cannot translate to every vendor: decoded only to be refused
# with a clear message instead of msgspec's "invalid tag".
class DocumentBlock(W, tag_field="type", tag="document"):
    source: dict[str, Any] | None = None


class SearchResultBlock(W, tag_field="type", tag="search_result"):
    source: str | None = None


class ServerToolUseBlock(W, tag_field="type", tag="server_tool_use"):
    id: str | None = None


class ContainerUploadBlock(W, tag_field="type", tag="container_upload"):
    file_id: str | None = None


UNSUPPORTED_BLOCKS = (DocumentBlock, SearchResultBlock, ServerToolUseBlock, ContainerUploadBlock)

ContentBlock = (
    TextBlock
    | ImageBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | DocumentBlock
    | SearchResultBlock
    | ServerToolUseBlock
    | ContainerUploadBlock
)


class Message(W):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class ToolDef(W):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControl | None = None
    strict: bool | None = None
    # "custom" (or absent) for client tools; server tools (web_search_..., bash_...) have a
    # versioned type and are executed by Anthropic, which a gateway cannot offer elsewhere.
    type: str | None = None


class ToolChoiceW(W):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingW(W):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None
    display: str | None = None


class MetadataW(W):
    user_id: str | None = None


class OutputFormatW(W):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfigW(W):
    effort: str | None = None
    format: OutputFormatW | None = None


class CountTokensBody(W, forbid_unknown_fields=False):
    model: str
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceW | None = None
    thinking: ThinkingW | None = None
    output_config: OutputConfigW | None = None


class MessagesBody(CountTokensBody, forbid_unknown_fields=False):
    # Required, as in the real API (checked by the parser: a missing max_tokens is a 400).
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: MetadataW | None = None
    stream: bool | None = None
    service_tier: str | None = None
    polyroute: PolyrouteOptions | None = None
