"""Token estimates for when a provider reports no usage (and for limits reserved before a call).

A real BPE tokenizer would need vocabulary files fetched from the internet (tiktoken) or per-vendor
tokenizers; ~4 characters per token is the vendors' own rule of thumb for English text, and
estimated rows are marked as such in the ledger.
"""

from __future__ import annotations

from polyroute.core import types as t

CHARS_PER_TOKEN = 4
# Per-message overhead of chat formatting (role markers), as OpenAI documents it.
MESSAGE_OVERHEAD = 4


def estimate_text(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_prompt(req: t.ChatRequest) -> int:
    n = 3
    for m in req.messages:
        n += MESSAGE_OVERHEAD
        for p in m.content:
            if isinstance(p, t.TextPart):
                n += estimate_text(p.text)
            elif isinstance(p, t.ImagePart):
                n += 765  # a high-detail 1024x1024 image, OpenAI's published figure
            elif isinstance(p, t.ToolCall):
                n += estimate_text(p.name) + estimate_text(p.arguments)
            elif isinstance(p, t.ToolResult):
                n += sum(estimate_text(x.text) for x in p.content if isinstance(x, t.TextPart))
            elif isinstance(p, t.Thinking):
                n += estimate_text(p.text)
    for tool in req.tools or ():
        n += estimate_text(tool.name) + estimate_text(tool.description or "") + estimate_text(str(tool.parameters or ""))
    return n
