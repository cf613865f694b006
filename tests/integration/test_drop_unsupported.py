"""`drop_unsupported_params` works the same for every provider type (the executor drops the
features, not each adapter): here `n` and `logprobs` to Anthropic, which has neither."""

from __future__ import annotations

import openai
import pytest

from polyroute.emulators.testing import EmulatorServer
from tests.helpers.gateway import run_gateway


@pytest.mark.parametrize("drop", [True, False])
def test_anthropic_drops_or_refuses_unsupported(anthropic_emulator: EmulatorServer, drop: bool) -> None:
    cfg = f"""
providers:
  a: {{type: anthropic, base_url: '{anthropic_emulator.base_url}', api_key: k, drop_unsupported_params: {str(drop).lower()}}}
models:
  claude: {{deployments: [{{provider: a, model: claude-haiku-4-5}}]}}
"""
    with run_gateway(cfg) as g:
        client = openai.OpenAI(base_url=g.openai_base, api_key="k", max_retries=0)
        kwargs = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "n": 2, "logprobs": True}
        if not drop:
            with pytest.raises(openai.BadRequestError, match="does not support logprobs, n"):
                client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
            assert anthropic_emulator.requests == []
            return
        reply = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    assert len(reply.choices) == 1 and "hi" in (reply.choices[0].message.content or "")
    sent = anthropic_emulator.requests[-1].body
    assert "n" not in sent and "logprobs" not in sent
