"""`polyroute emulate KIND ...` and `python -m polyroute.emulators KIND ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from .behaviour import Behaviour
from .core import KINDS, Emulator
from .serving import RunningServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="which vendor API to emulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one, printed)")
    parser.add_argument("--api-key", default=None, help="accept only this API key (default: accept any)")
    parser.add_argument("--models", default=None, help="comma-separated model ids for the model listing")
    answer = parser.add_argument_group("default answer")
    answer.add_argument("--text", default=None, help="answer this text instead of echoing the user")
    answer.add_argument("--echo-prefix", default="echo: ", help="prefix of the echo answer (default 'echo: ')")
    answer.add_argument("--chunks", type=int, default=None, help="split streamed answers into N pieces")
    answer.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream events")
    answer.add_argument("--first-token-delay", type=float, default=0.0,
                        help="seconds between response headers and the first event")
    answer.add_argument("--headers-delay", type=float, default=0.0, help="seconds before the response starts")
    failures = parser.add_argument_group("failures")
    failures.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests that fail (0..1)")
    failures.add_argument("--fail-status", type=int, default=503, help="HTTP status of failures (default 503)")
    failures.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on failures")
    failures.add_argument("--seed", type=int, default=0, help="seed of the failure draw (default 0)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `emulate` subcommand to an argparse subparsers object; its handler is `args.func`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulate", help="run a vendor API emulator (OpenAI, Anthropic or Gemini wire format)",
        description="Serve an emulated vendor API for tests and CI. Admin endpoints under /_emulator/.")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def build_emulator(args: argparse.Namespace) -> Emulator:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    emu = Emulator(args.kind, api_key=args.api_key, models=models)
    emu.set_behaviour(Behaviour(text=args.text, echo_prefix=args.echo_prefix, chunks=args.chunks,
                                chunk_delay=args.chunk_delay, first_token_delay=args.first_token_delay,
                                headers_delay=args.headers_delay))
    if args.fail_rate:
        emu.set_failure_rate(args.fail_rate, seed=args.seed,
                             behaviour=Behaviour(status=args.fail_status, retry_after=args.retry_after))
    return emu


async def serve(emu: Emulator, host: str, port: int) -> None:
    server = RunningServer(emu, host, port)
    await server.start()
    print(f"polyroute emulator ({emu.kind}) listening on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def run(args: argparse.Namespace) -> int:
    try:
        emu = build_emulator(args)
    except ValueError as exc:
        print(f"emulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(emu, args.host, args.port))
    except OSError as exc:
        print(f"emulate: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyroute.emulators",
                                     description="Serve an emulated vendor API for tests and CI.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
