"""The chat model: SmolLM2-135M-Instruct on llama.cpp's server engine, through xllamacpp.

`xllamacpp.Server.handle_chat_completions(body, callback)` is llama.cpp's own OpenAI-compatible
handler called in-process: it applies the GGUF's chat template, batches parallel slots, enforces
stop strings / grammars / seeds, counts tokens with the model's tokenizer, and calls `callback`
once per SSE chunk; returning True from the callback cancels the generation. The call blocks
(without the GIL) until the answer is complete, so it runs in a worker thread. With
`return_progress`, llama.cpp also calls back after each batch of prompt tokens, so a request
can be cancelled while a long prompt is still being read. The `Server` constructor, by contrast,
holds the GIL for the whole load (see `provider.InHouse.start`).

`xllamacpp.Server` also starts llama.cpp's HTTP server. It is bound to a Unix socket in a private
temporary directory (no TCP port), guarded by a random API key, with the web UI and slot
endpoints off; polyroute never talks to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from polyroute.providers.inhouse.cpu import cpu_threads

PROMPT_BATCH = 256


@contextlib.contextmanager
def _signals_preserved() -> Iterator[None]:
    """Restore SIGINT/SIGTERM dispositions after the block.

    xllamacpp's server init (src/xllamacpp/server.cpp upstream) installs its own SIGINT/SIGTERM
    handlers with sigaction; inside the gateway they would swallow the signals uvicorn shuts
    down on. The installed wheel was checked not to, but the next one may. The `struct
    sigaction` is copied as opaque bytes, so no platform layout is assumed.
    """
    if sys.platform == "win32":
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = {sig: ctypes.create_string_buffer(1024) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, buf in saved.items():
        libc.sigaction(int(sig), None, buf)
    try:
        yield
    finally:
        for sig, buf in saved.items():
            libc.sigaction(int(sig), buf, None)


class ChatModel:
    """One loaded GGUF model with `parallel` slots of `context_size` tokens each. Thread-safe."""

    def __init__(self, path: Path, *, context_size: int, parallel: int, threads: int | None = None) -> None:
        import xllamacpp

        self.context_size = context_size
        self.parallel = parallel
        self.threads = threads or cpu_threads()
        self._sockdir = tempfile.mkdtemp(prefix="polyroute-llama-")  # mode 0700
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.n_parallel = parallel
        p.n_ctx = context_size * parallel  # llama.cpp splits the context evenly across slots
        # Prompts are processed PROMPT_BATCH tokens at a time, with a progress callback after each
        # batch: the granularity at which a cancelled request stops during a long prompt.
        p.n_batch = p.n_ubatch = PROMPT_BATCH
        for cpu in (p.cpuparams, p.cpuparams_batch):
            cpu.n_threads = self.threads
            cpu.poll = 0  # sleep, not spin, between operations: the CPUs are shared (see cpu_threads)
        p.hostnames = [os.path.join(self._sockdir, "llama.sock")]
        p.api_keys = [secrets.token_urlsafe(32)]
        p.ui = False
        p.endpoint_slots = False
        p.endpoint_metrics = False
        p.n_threads_http = 1
        p.cache_ram_mib = 0  # no extra host-RAM prompt cache: RSS stays predictable
        p.verbosity = -1
        p.warmup = True
        try:
            with _signals_preserved():
                self._server: Any = xllamacpp.Server(p)
        except BaseException:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            raise

    def generate(self, body: dict[str, Any], emit: Callable[[dict[str, Any]], bool]) -> None:
        """Run one streamed chat completion, calling `emit(chunk)` per chunk (blocking).

        `emit` returns True to cancel. Errors arrive as a chunk `{"error": {...}}`.
        """
        server = self._server
        if server is None:
            raise RuntimeError("the chat model is closed")
        failure: list[BaseException] = []

        def on_chunk(raw: bytes) -> bool:
            # xllamacpp swallows exceptions raised here (and stops): keep them to re-raise.
            try:
                return emit(orjson.loads(raw))
            except BaseException as exc:
                failure.append(exc)
                return True

        server.handle_chat_completions(orjson.dumps(body), on_chunk)
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Stop llama.cpp's loop and free the model (blocks until its thread has joined)."""
        self._server = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
