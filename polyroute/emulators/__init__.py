"""Protocol emulators of vendor LLM APIs (OpenAI, Azure OpenAI, Anthropic, Gemini).

They share no code with the gateway: they are independent upstreams for its tests and for users' CI.
Start one with `EmulatorServer` (polyroute.emulators.testing), the pytest fixtures in
polyroute.emulators.pytest_plugin, or `python -m polyroute.emulators KIND`. See README.md here.
"""

from __future__ import annotations

from .behaviour import Behaviour, BehaviourError, ToolCall
from .core import KINDS, Emulator
from .recording import RecordedRequest
from .testing import EmulatorServer

__all__ = ["KINDS", "Behaviour", "BehaviourError", "Emulator", "EmulatorServer", "RecordedRequest", "ToolCall"]
