"""The in-house provider: chat and embeddings from models running inside the gateway process.

Loading. `start()` loads each model once, in its own thread, and waits for both: about 0.5 s for
the chat model and 0.3 s for the embedder, side by side (bench/inhouse). It waits because
xllamacpp's `Server` constructor holds the GIL for the whole load (measured: the event loop
stalls ~0.5 s), so loading in the background after start-up would freeze requests already being
served; finishing first keeps that stall out of every request, and a broken model fails
start-up with its cause instead of failing requests later. A missing package fails at once,
naming what to install.

Running. Every generation runs in a worker thread (llama.cpp and onnxruntime release the GIL);
tokens reach the event loop through `bridge.ThreadStream` as they are produced. At most
`max_concurrency` generations run (llama.cpp gets as many parallel slots) and at most
`max_queue` wait; beyond that a request gets a retryable 503 at once. When the consumer goes
away (client disconnect, timeout) the generation stops at its next token, or within one batch of
prompt tokens while a long prompt is read, and only then frees its slot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from polyroute.config.defaults import INHOUSE_CHAT, INHOUSE_EMBEDDING
from polyroute.core import errors as e
from polyroute.core import types as t
from polyroute.providers.base import Capabilities, Provider
from polyroute.providers.inhouse import models
from polyroute.providers.inhouse.bridge import ThreadStream
from polyroute.providers.inhouse.capacity import Slots
from polyroute.providers.inhouse.chat_wire import ChunkReader, assemble, build_body

if TYPE_CHECKING:
    from polyroute.config.schema import ProviderConfig
    from polyroute.core.deployment import Deployment
    from polyroute.providers.inhouse.embedder import Embedder
    from polyroute.providers.inhouse.llm import ChatModel

log = logging.getLogger("polyroute.inhouse")

M = TypeVar("M")


class _Lazy(Generic[M]):
    """A model loaded once, in its own thread, and shared by everyone who awaits it."""

    def __init__(self, label: str, load: Callable[[], M]) -> None:
        self.label = label
        self._load = load
        self._future: concurrent.futures.Future[M] | None = None
        self.load_seconds: float | None = None

    def begin(self) -> None:
        if self._future is not None:
            return
        fut: concurrent.futures.Future[M] = concurrent.futures.Future()
        self._future = fut
        threading.Thread(target=self._run, args=(fut,), name=f"inhouse-load-{self.label}", daemon=True).start()

    def _run(self, fut: concurrent.futures.Future[M]) -> None:
        t0 = time.perf_counter()
        try:
            model = self._load()
        except BaseException as exc:
            log.error("in-house model '%s' failed to load: %s", self.label, exc)
            fut.set_exception(exc)
            return
        self.load_seconds = time.perf_counter() - t0
        log.info("in-house model '%s' loaded in %.2f s", self.label, self.load_seconds)
        fut.set_result(model)

    async def wait(self) -> M:
        """The model, once loaded (starting the load if needed); raises the load's error."""
        self.begin()
        assert self._future is not None
        # shield: a caller that gives up waiting must not cancel the shared load
        return await asyncio.shield(asyncio.wrap_future(self._future))

    async def get(self) -> M:
        try:
            return await self.wait()
        except Exception as exc:
            raise e.Unavailable(f"in-house model '{self.label}' could not be loaded: {exc}") from exc

    async def unload(self, close: Callable[[M], None]) -> None:
        fut, self._future = self._future, None
        if fut is None:
            return
        try:
            model = await asyncio.wrap_future(fut)
        except Exception:
            return
        await asyncio.to_thread(close, model)


def _load_chat(config: ProviderConfig) -> ChatModel:
    from polyroute.providers.inhouse.llm import ChatModel

    return ChatModel(models.chat_model_path(), context_size=config.context_size, parallel=config.max_concurrency)


def _load_embedder() -> Embedder:
    from polyroute.providers.inhouse.embedder import Embedder

    model_path, tokenizer_path = models.embedding_model_paths()
    return Embedder(model_path, tokenizer_path)


class InHouse(Provider):
    type = "inhouse"
    # JSON mode and JSON schemas are honoured through llama.cpp grammars; tools, images,
    # logprobs and n > 1 are beyond what this small model can do.
    capabilities = Capabilities(embeddings=True, tools=False, json_schema=True, images=False, logprobs=False, n=False)

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        if config.context_size < 64:
            raise ValueError(f"provider '{name}': context_size must be at least 64 tokens (got {config.context_size})")
        self._chat = _Lazy(INHOUSE_CHAT, lambda: _load_chat(config))
        self._embedder = _Lazy(INHOUSE_EMBEDDING, _load_embedder)
        self.chat_slots = Slots(f"in-house model '{INHOUSE_CHAT}'", config.max_concurrency, config.max_queue)
        self.embed_slots = Slots(f"in-house model '{INHOUSE_EMBEDDING}'", config.max_concurrency, config.max_queue)
        self._chat_pool = concurrent.futures.ThreadPoolExecutor(config.max_concurrency, thread_name_prefix=f"{name}-chat")
        self._embed_pool = concurrent.futures.ThreadPoolExecutor(config.max_concurrency, thread_name_prefix=f"{name}-embed")
        # Models that deployments name, when the catalogue reports them (add_deployment).
        self._named: set[str] | None = None
        self._work: set[asyncio.Future[Any]] = set()
        self._stops: set[Callable[[], None]] = set()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    def add_deployment(self, dep: Deployment) -> None:
        """Called by the catalogue for each deployment on this provider: unknown models fail
        start-up here, and only the models named are loaded."""
        problem = models.model_problem(dep.upstream_model)
        if problem is not None:
            raise ValueError(f"deployment '{dep.id}' on provider '{self.name}': {problem[0]}. Fix: {problem[1]}")
        if self._named is None:
            self._named = set()
        self._named.add(dep.upstream_model)

    async def start(self) -> None:
        wanted = set(models.MODELS) if self._named is None else self._named
        loads: list[_Lazy[Any]] = []
        if INHOUSE_CHAT in wanted:
            models.chat_model_path()  # a missing package fails here, before any thread starts
            loads.append(self._chat)
        if INHOUSE_EMBEDDING in wanted:
            models.embedding_model_paths()
            loads.append(self._embedder)
        for lazy in loads:
            lazy.begin()  # side by side
        for lazy in loads:
            try:
                await lazy.wait()
            except Exception as exc:
                raise RuntimeError(f"provider '{self.name}': in-house model '{lazy.label}' failed to load: {exc}") from exc

    async def close(self) -> None:
        self._closed = True
        for stop in list(self._stops):
            stop()
        if self._work:
            await asyncio.wait(list(self._work), timeout=30)
        await self._chat.unload(lambda m: m.close())
        await self._embedder.unload(lambda m: m.close())
        self._chat_pool.shutdown(wait=False)
        self._embed_pool.shutdown(wait=False)

    # --- helpers -----------------------------------------------------------------------------

    def _check(self, dep: Deployment, kind: str) -> None:
        if self._closed:
            raise e.Unavailable(f"provider '{self.name}' is shutting down", provider=self.name)
        problem = models.model_problem(dep.upstream_model, kind)
        if problem is not None:
            raise e.InvalidRequest(f"{problem[0]}; {problem[1]}", provider=self.name)

    def _track(self, done: asyncio.Future[Any], slots: Slots, stop: Callable[[], None]) -> None:
        """Hold the slot until the worker thread has finished, whatever the request does."""
        self._work.add(done)
        self._stops.add(stop)

        def finished(f: asyncio.Future[Any]) -> None:
            self._work.discard(f)
            self._stops.discard(stop)
            slots.release()
            if not f.cancelled():
                f.exception()  # retrieved here, so an abandoned request leaves no warning

        done.add_done_callback(finished)

    # --- chat --------------------------------------------------------------------------------

    def stream(self, req: t.ChatRequest, dep: Deployment) -> AsyncIterator[t.StreamEvent]:
        return self._generate(req, dep)

    async def _generate(self, req: t.ChatRequest, dep: Deployment) -> AsyncGenerator[t.StreamEvent, None]:
        self._check(dep, "chat")
        llm = await self._chat.get()
        body = build_body(req, context_size=self.config.context_size)
        reader = ChunkReader(dep.upstream_model, self.name)
        await self.chat_slots.acquire()
        try:
            self._check(dep, "chat")  # the provider may have closed while this request queued
            run: ThreadStream[dict[str, Any]] = ThreadStream(lambda emit: llm.generate(body, emit), self._chat_pool)
        except BaseException:
            self.chat_slots.release()
            raise
        self._track(run.done, self.chat_slots, run.stop)
        try:
            async for chunk in run:
                for ev in reader.feed(chunk):
                    yield ev
        except e.GatewayError:
            raise
        except Exception as exc:
            raise e.UpstreamError(f"in-house model '{dep.upstream_model}' failed: {exc}", provider=self.name) from exc
        finally:
            run.stop()  # a no-op after a complete answer; otherwise cancels at the next token
        if not reader.finished:
            raise e.UpstreamError(f"in-house model '{dep.upstream_model}' ended without finishing", provider=self.name)

    async def chat(self, req: t.ChatRequest, dep: Deployment) -> t.ChatResponse:
        events = self._generate(req, dep)
        async with contextlib.aclosing(events):
            collected = [ev async for ev in events]
        return assemble(collected, dep.upstream_model)

    # --- embeddings --------------------------------------------------------------------------

    async def embed(self, req: t.EmbeddingRequest, dep: Deployment) -> t.EmbeddingResponse:
        self._check(dep, "embedding")
        embedder = await self._embedder.get()
        if req.dimensions is not None and req.dimensions != embedder.dimensions:
            raise e.InvalidRequest(
                f"in-house model '{dep.upstream_model}' returns {embedder.dimensions} dimensions and cannot "
                f"shorten its vectors; omit 'dimensions' or set it to {embedder.dimensions}",
                param="dimensions",
                provider=self.name,
            )
        await self.embed_slots.acquire()
        stop = threading.Event()
        try:
            self._check(dep, "embedding")
            done = asyncio.get_running_loop().run_in_executor(self._embed_pool, embedder.embed, req.inputs, stop.is_set)
        except BaseException:
            self.embed_slots.release()
            raise
        self._track(done, self.embed_slots, stop.set)
        try:
            # shield: if the request is cancelled, the batch loop stops at its next batch and
            # the slot is freed only then (see _track)
            vectors, n_tokens = await asyncio.shield(done)
        except Exception as exc:
            raise e.UpstreamError(f"in-house model '{dep.upstream_model}' failed: {exc}", provider=self.name) from exc
        except BaseException:
            stop.set()
            raise
        return t.EmbeddingResponse(
            model=dep.upstream_model, vectors=vectors.tolist(), usage=t.Usage(input_tokens=n_tokens)
        )
