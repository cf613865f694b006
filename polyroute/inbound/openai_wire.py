"""OpenAI Chat Completions request schema, as the inbound API accepts it.

Decoded with msgspec straight from the request bytes: validation and parsing are one pass, and a
wrong type yields a path such as `$.messages[0].content` for the error message. Unknown fields
are ignored, as OpenAI's newer SDKs send fields older gateways do not know.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from polyroute.core.types import RequestOptions


class W(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class ImageURL(W):
    url: str
    detail: str | None = None


class TextContent(W, tag_field="type", tag="text"):
    text: str
    # Not OpenAI's, but Anthropic-minded clients send it through OpenAI-compatible gateways.
    cache_control: dict[str, Any] | None = None


class ImageContent(W, tag_field="type", tag="image_url"):
    image_url: ImageURL


class RefusalContent(W, tag_field="type", tag="refusal"):
    refusal: str


class InputAudio(W, tag_field="type", tag="input_audio"):
    input_audio: dict[str, Any]


class FileContent(W, tag_field="type", tag="file"):
    file: dict[str, Any]


ContentPart = TextContent | ImageContent | RefusalContent | InputAudio | FileContent


class FunctionCall(W):
    name: str
    arguments: str


class ToolCallW(W):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"
    # Google's OpenAI-compatible API carries Gemini thought signatures here; so do we.
    extra_content: dict[str, Any] | None = None


class SystemMessage(W, tag_field="role", tag="system"):
    content: str | list[ContentPart]
    name: str | None = None


class DeveloperMessage(W, tag_field="role", tag="developer"):
    content: str | list[ContentPart]
    name: str | None = None


class UserMessage(W, tag_field="role", tag="user"):
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(W, tag_field="role", tag="assistant"):
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallW] | None = None
    refusal: str | None = None
    # Reasoning returned by the gateway on an earlier turn, sent back for signed thinking.
    reasoning_content: str | None = None
    reasoning_signature: str | None = None
    function_call: FunctionCall | None = None


class ToolMessage(W, tag_field="role", tag="tool"):
    content: str | list[ContentPart]
    tool_call_id: str


MessageW = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDef(W):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(W):
    function: FunctionDef
    type: Literal["function"] = "function"


class NamedFunction(W):
    name: str


class NamedToolChoice(W):
    function: NamedFunction
    type: Literal["function"] = "function"


class JSONSchemaSpec(W):
    name: str = "response"
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextFormat(W, tag_field="type", tag="text"):
    pass


class JSONObjectFormat(W, tag_field="type", tag="json_object"):
    pass


class JSONSchemaFormat(W, tag_field="type", tag="json_schema"):
    json_schema: JSONSchemaSpec


class StreamOptions(W):
    include_usage: bool | None = None


# The `polyroute` body object is decoded straight into the canonical options.
PolyrouteOptions = RequestOptions


class ChatCompletionBody(W, forbid_unknown_fields=False):
    model: str
    messages: list[MessageW]
    tools: list[ToolDef] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: TextFormat | JSONObjectFormat | JSONSchemaFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning_effort: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    polyroute: PolyrouteOptions | None = None


class EmbeddingBody(W):
    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None
    polyroute: PolyrouteOptions | None = None
