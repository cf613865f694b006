"""The aiohttp application of an emulator: vendor routes, request recording and the admin API.

Admin API (never recorded, never authenticated, never consumes behaviours):
  GET  /_emulator/health      -> {"kind": ..., "status": "ok"}
  GET  /_emulator/behaviour   -> {"default": {...}, "queue": [...], "failure_rate": {...} | null}
  POST /_emulator/behaviour   <- {"default": {...} | null, "enqueue": [{...}, ...], "times": 1,
                                  "failure_rate": {"rate": 0.2, "seed": 1, "behaviour": {...}} | null,
                                  "clear_queue": true}   (every key optional; 400 on a bad body)
  POST /_emulator/reset       -> behaviours, queue, failure rate, recorded requests and cache cleared
  GET  /_emulator/requests    -> {"requests": [{method, path, query, headers, body, raw_body, received_at}]}
  DELETE /_emulator/requests  -> recorded requests cleared
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from . import anthropic_api, gemini_api, openai_api
from .behaviour import BehaviourError
from .core import Emulator
from .recording import make_record
from .wire import json_response

EMULATOR_KEY = web.AppKey("polyroute_emulator", Emulator)
ADMIN_PREFIX = "/_emulator/"

_ROUTES: dict[str, Callable[[web.Application, Emulator], None]] = {
    "openai": openai_api.add_routes,
    "anthropic": anthropic_api.add_routes,
    "gemini": gemini_api.add_routes,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(emu: Emulator) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(ADMIN_PREFIX):
            raw = await request.read()
            emu.log.append(make_record(request.method, request.path, dict(request.query),
                                       dict(request.headers), raw))
        return await handler(request)

    app = web.Application(middlewares=[record], client_max_size=64 * 1024 * 1024)
    app[EMULATOR_KEY] = emu

    async def on_startup(_: web.Application) -> None:
        emu.attach_loop()

    app.on_startup.append(on_startup)
    _ROUTES[emu.kind](app, emu)
    _add_admin_routes(app, emu)
    return app


def _add_admin_routes(app: web.Application, emu: Emulator) -> None:
    async def health(_: web.Request) -> web.StreamResponse:
        return json_response({"kind": emu.kind, "status": "ok"})

    async def get_behaviour(_: web.Request) -> web.StreamResponse:
        return json_response(emu.behaviours.snapshot())

    async def post_behaviour(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return json_response({"error": "the body must be JSON"}, status=400)
        try:
            emu.behaviours.apply_admin(body)
        except BehaviourError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response(emu.behaviours.snapshot())

    async def reset(_: web.Request) -> web.StreamResponse:
        emu.reset()
        return json_response({"status": "reset"})

    async def get_requests(_: web.Request) -> web.StreamResponse:
        return json_response({"requests": [r.to_dict() for r in emu.requests]})

    async def clear_requests(_: web.Request) -> web.StreamResponse:
        emu.clear_requests()
        return json_response({"status": "cleared"})

    app.router.add_get(ADMIN_PREFIX + "health", health)
    app.router.add_get(ADMIN_PREFIX + "behaviour", get_behaviour)
    app.router.add_post(ADMIN_PREFIX + "behaviour", post_behaviour)
    app.router.add_post(ADMIN_PREFIX + "reset", reset)
    app.router.add_get(ADMIN_PREFIX + "requests", get_requests)
    app.router.add_delete(ADMIN_PREFIX + "requests", clear_requests)
