"""The `polyroute` command: serve, emulate, router, and the admin commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# Subcommands that live with their feature; each module offers `register(subparsers)`.
_FEATURE_COMMANDS = (
    "polyroute.emulators.cli",
    "polyroute.learned_router.cli",
    "polyroute.governance.cli",
    "polyroute.evaluation.cli",
)


def _serve(args: argparse.Namespace) -> int:
    from polyroute.config.load import ConfigError
    from polyroute.server.factory import CONFIG_ENV, resolve_config

    try:
        cfg, digest, source = resolve_config(args.config)
    except ConfigError as exc:
        print(f"polyroute: invalid configuration: {exc}", file=sys.stderr)
        return 2
    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    workers = args.workers or cfg.server.workers
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    else:
        os.environ.pop(CONFIG_ENV, None)
    models = ", ".join(sorted(cfg.models)) or "none"
    print(f"polyroute: config {source} (hash {digest}); models: {models}", file=sys.stderr)
    print(f"polyroute: listening on http://{host}:{port} with {workers} worker(s)", file=sys.stderr)
    # Logging (JSON/text through a queue), per-worker metrics and SIGHUP forwarding: polyroute/ops/serve.py.
    from polyroute.ops.logs import resolve_format
    from polyroute.ops.serve import run_server

    log_format = resolve_format(args.log_format, cfg.ops.logging.format if cfg.ops is not None else None)
    return run_server(
        host=host, port=port, workers=workers, log_level=args.log_level, log_format=log_format, graceful_timeout=30,
        keep_alive=cfg.server.keep_alive_timeout,
    )


# Commands that never need the feature modules: the gateway process must not carry their imports
# (the learned router's training stack alone is ~90 MB of RSS).
_CORE_COMMANDS = ("serve", "check-config")


def build_parser(features: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyroute", description="A self-hosted AI gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the gateway")
    serve.add_argument("--config", "-c", help="YAML config file (default: in-house model + vendor keys in env)")
    serve.add_argument("--host", help="address to bind (default from config, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default from config, 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default from config, 1)")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format", choices=["json", "text"], help="log lines as JSON objects or text (default: json unless a terminal)"
    )
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=_check_config)
    for module in _FEATURE_COMMANDS if features else ():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.register(sub)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    from polyroute.config.load import ConfigError, load_config

    try:
        cfg, digest = load_config(args.config)
    except ConfigError as exc:
        print(f"polyroute: invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({len(cfg.providers)} providers, {len(cfg.models)} models, hash {digest})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(features=not (argv and argv[0] in _CORE_COMMANDS)).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
