"""Canonical <-> Gemini generateContent: request bodies, responses, streams, errors, image guard."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.config.schema import ProviderConfig
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.gemini import (
    THINKING_BUDGETS,
    Gemini,
    StreamTranslator,
    build_body,
    fetchable_urls,
    parse_response,
    retry_delay,
    tool_call_id,
    usage_from_gemini,
)
from polyroute.providers.image_fetch import (
    ImageFetcher,
    ImageFetchError,
    is_public_address,
    parse_data_url,
    sniff,
)


def req(messages: list[t.Message] | None = None, **kw: Any) -> t.ChatRequest:
    return t.ChatRequest(model="m", messages=messages or [user("hi")], **kw)


def user(text: str) -> t.Message:
    return t.Message(role="user", content=[t.TextPart(text=text)])


def test_contents_roles_tools_and_signatures() -> None:
    messages = [
        t.Message(role="system", content=[t.TextPart(text="be brief")]),
        user("weather?"),
        t.Message(role="assistant", content=[
            t.Thinking(text="thoughts are not sent back", signature="TS0"),
            t.TextPart(text="checking"),
            t.ToolCall(id="c1", name="get", arguments='{"city":"Paris"}', signature="TS1"),
            t.ToolCall(id="c2", name="other", arguments=""),
        ]),
        t.Message(role="tool", content=[t.ToolResult(tool_call_id="c1", content=[t.TextPart(text='{"temp": 20}')])]),
        t.Message(role="tool", content=[t.ToolResult(tool_call_id="c2", content=[t.TextPart(text="nope")], is_error=True)]),
        user("thanks"),
    ]
    body = build_body(req(messages))
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [
            {"text": "checking", "thoughtSignature": "TS0"},
            {"functionCall": {"name": "get", "args": {"city": "Paris"}}, "thoughtSignature": "TS1"},
            {"functionCall": {"name": "other", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get", "response": {"temp": 20}}},
            {"functionResponse": {"name": "other", "response": {"error": "nope"}}},
            {"text": "thanks"},
        ]},
    ]


def test_tool_result_without_a_known_call_is_a_client_error() -> None:
    m = t.Message(role="tool", content=[t.ToolResult(tool_call_id="zz", content=[t.TextPart(text="x")])])
    with pytest.raises(e.InvalidRequest, match="zz"):
        build_body(req([user("a"), m]))
    named = t.Message(role="tool", content=[t.ToolResult(tool_call_id="zz", name="f", content=[t.TextPart(text="x")])])
    # the tool turn is a user turn: merged with the user text before it
    assert build_body(req([user("a"), named]))["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"functionResponse": {"name": "f", "response": {"result": "x"}}}]}
    ]


def test_generation_config_tools_and_json() -> None:
    tools = [
        t.Tool(name="f", description="d", parameters={"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}),
        t.Tool(name="noargs", parameters={"type": "object", "properties": {}}),
    ]
    schema = {"type": "object", "properties": {"x": {"type": "integer", "default": 1}}, "$schema": "s"}
    body = build_body(
        req(
            tools=tools, tool_choice=t.ToolChoice(mode="tool", name="f"), temperature=0.3, top_p=0.8, top_k=20,
            max_tokens=99, stop=["END"], n=2, seed=3, presence_penalty=0.1, frequency_penalty=0.2,
            response_format=t.ResponseFormat(type="json_schema", schema=schema), reasoning_effort="medium",
        )
    )
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "f", "description": "d", "parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}},
        {"name": "noargs"},
    ]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.8, "topK": 20, "maxOutputTokens": 99, "stopSequences": ["END"],
        "candidateCount": 2, "seed": 3, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"x": {"type": "INTEGER"}}},
        "thinkingConfig": {"thinkingBudget": THINKING_BUDGETS["medium"], "includeThoughts": True},
    }


@pytest.mark.parametrize(
    ("choice", "fcc"),
    [
        (t.ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (t.ToolChoice(mode="none"), {"mode": "NONE"}),
        (t.ToolChoice(mode="required"), {"mode": "ANY"}),
    ],
)
def test_tool_choice(choice: t.ToolChoice, fcc: dict[str, Any]) -> None:
    body = build_body(req(tools=[t.Tool(name="f")], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": fcc}


def test_json_object_and_explicit_budget_and_stop_limit() -> None:
    gc = build_body(req(response_format=t.ResponseFormat(type="json_object"), thinking_budget=3000))["generationConfig"]
    assert gc == {"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 3000, "includeThoughts": True}}
    with pytest.raises(e.InvalidRequest):
        build_body(req(stop=["1", "2", "3", "4", "5", "6"]))


def test_images_inline_and_fetched() -> None:
    m = t.Message(role="user", content=[
        t.ImagePart(data="QUJD", media_type="image/jpeg"),
        t.ImagePart(url="data:image/png;base64,iVBO"),
        t.ImagePart(url="https://example.com/cat.png"),
        t.ImagePart(url="gs://bucket/x.png", media_type="image/png"),
    ])
    r = req([m])
    assert fetchable_urls(r) == ["https://example.com/cat.png"]
    parts = build_body(r, {"https://example.com/cat.png": ("image/webp", "UklG")})["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "QUJD"}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/x.png"}},
    ]


def gemini_response(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "responseId": "resp-1",
        "modelVersion": "gemini-2.5-flash",
        "candidates": [{
            "index": 0,
            "content": {"role": "model", "parts": [
                {"text": "pondering", "thought": True},
                {"text": "Let me check.", "thoughtSignature": "TSX"},
                {"functionCall": {"name": "get", "args": {"b": 1, "a": 2}}, "thoughtSignature": "TS1"},
            ]},
            "finishReason": "STOP",
        }],
        "usageMetadata": {
            "promptTokenCount": 100, "cachedContentTokenCount": 40, "candidatesTokenCount": 10,
            "thoughtsTokenCount": 25, "totalTokenCount": 135,
        },
    }
    d.update(over)
    return d


def test_parse_response() -> None:
    r = parse_response(gemini_response(), "m", "p")
    cid = tool_call_id("resp-1", 0, 0, "get", '{"b":1,"a":2}')
    assert r.id == "resp-1" and r.model == "gemini-2.5-flash"
    assert r.choices[0].message.content == [
        t.Thinking(text="pondering"),
        t.Thinking(text="", signature="TSX"),
        t.TextPart(text="Let me check."),
        t.ToolCall(id=cid, name="get", arguments='{"b":1,"a":2}', signature="TS1"),
    ]
    assert r.choices[0].finish_reason == "tool_calls"
    # prompt includes cached; output = candidates + thoughts; nothing counted twice
    assert r.usage == t.Usage(input_tokens=100, output_tokens=35, cached_input_tokens=40, reasoning_tokens=25)
    assert parse_response(gemini_response(), "m", "p").choices[0].message.content[3].id == cid  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
     ("PROHIBITED_CONTENT", "content_filter"), ("MALFORMED_FUNCTION_CALL", "error"), ("OTHER", "stop")],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    d = gemini_response(candidates=[{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}])
    assert parse_response(d, "m", "p").choices[0].finish_reason == finish


def test_blocked_prompt_and_tool_use_tokens() -> None:
    r = parse_response({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}, "m", "p")
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == []
    with pytest.raises(e.UpstreamError):
        parse_response({}, "m", "p")
    u = usage_from_gemini({"promptTokenCount": 5, "toolUsePromptTokenCount": 3, "candidatesTokenCount": 2})
    assert u == t.Usage(input_tokens=8, output_tokens=2)


def test_stream_translation() -> None:
    chunks: list[dict[str, Any]] = [
        {"responseId": "r1", "modelVersion": "gm", "candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}]}, "index": 0}]},
        {"responseId": "r1", "candidates": [{"content": {"parts": [{"text": "Hel"}]}, "index": 0}]},
        {"responseId": "r1", "candidates": [{"content": {"parts": [{"text": "lo"}]}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 7}},
        {"responseId": "r1", "candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "S"}]},
                                               "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4, "thoughtsTokenCount": 2}},
    ]
    tr = StreamTranslator("p", "m")
    out: list[t.StreamEvent] = []
    for c in chunks:
        out.extend(tr.feed(c))
    out.extend(tr.end())
    cid = tool_call_id("r1", 0, 0, "f", '{"a":1}')
    assert out == [
        t.StreamStart(id="r1", model="gm", created=out[0].created),  # type: ignore[union-attr]
        t.ThinkingDelta(text="hmm"),
        t.TextDelta(text="Hel"),
        t.TextDelta(text="lo"),
        t.ToolCallStart(index=0, id=cid, name="f", signature="S"),
        t.ToolCallDelta(index=0, arguments='{"a":1}'),
        t.Finish(reason="tool_calls"),
        t.UsageEvent(usage=t.Usage(input_tokens=7, output_tokens=6, reasoning_tokens=2)),
    ]


def test_stream_cut_short_or_error_raises() -> None:
    tr = StreamTranslator("p", "m")
    tr.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0}]})
    with pytest.raises(e.UpstreamError, match="before it finished"):
        tr.end()
    with pytest.raises(e.UpstreamError, match="quota"):
        StreamTranslator("p", "m").feed({"error": {"code": 429, "message": "quota"}})


def test_provider_urls_and_errors() -> None:
    p = Gemini("g", ProviderConfig(type="gemini", api_key="k"))
    assert p.url("gemini-2.5-flash", "generateContent") == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert p.headers == {"x-goog-api-key": "k"}
    p2 = Gemini("g", ProviderConfig(type="gemini", base_url="http://127.0.0.1:9/v1beta"))
    assert p2.url("models/x", "batchEmbedContents") == "http://127.0.0.1:9/v1beta/models/x:batchEmbedContents"
    raw = (b'{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":'
           b'[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}')
    assert retry_delay(raw) == 12.0
    err = p.map_error(429, raw, {})
    assert isinstance(err, e.RateLimited) and err.retry_after == 12.0 and "Resource exhausted" in err.message
    assert isinstance(p.map_error(503, b'{"error":{"message":"overloaded"}}', {}), e.UpstreamOverloaded)
    assert isinstance(p.map_error(400, b'{"error":{"message":"bad"}}', {}), e.InvalidRequest)
    assert p.unsupported(req(n=3)) == []


# --- image fetch guard (no network: addresses and URLs only) ----------------------------------


@pytest.mark.parametrize(
    ("addr", "public"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("0.0.0.0", False), ("100.64.0.1", False), ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False), ("2002:7f00:0001::", False), ("not-an-ip", False),
    ],
)
def test_public_addresses(addr: str, public: bool) -> None:
    assert is_public_address(addr) is public


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://x/y.png", "http://127.0.0.1/x.png", "http://[::1]/x.png",
     "http://169.254.169.254/latest/meta-data", "http://localhost:8080/x.png", "http://0x7f000001/x.png", "http://127.1/x.png", "http:///x"],
)
def test_check_url_rejects(url: str) -> None:
    with pytest.raises(ImageFetchError):
        ImageFetcher().check_url(url)


def test_check_url_allows_names_and_opt_in() -> None:
    ImageFetcher().check_url("https://example.com/cat.png")  # names are checked at resolution
    ImageFetcher(allow_private=True).check_url("http://127.0.0.1:8080/x.png")


def test_data_urls_and_sniffing() -> None:
    assert parse_data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert parse_data_url("data:image/svg+xml,%3Csvg%3E") == ("image/svg+xml", "PHN2Zz4=")
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<html>") is None
