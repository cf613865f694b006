"""`polyroute emulate` (via cli.register) and `python -m polyroute.emulators`."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from polyroute.emulators import cli

from .rawhttp import request


def test_register_adds_the_emulate_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="polyroute")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["emulate", "gemini", "--port", "9999", "--api-key", "k", "--fail-rate", "0.2",
                              "--fail-status", "429", "--retry-after", "1", "--chunk-delay", "0.01",
                              "--first-token-delay", "0.5", "--chunks", "3", "--models", "a, b"])
    assert args.func is cli.run and args.kind == "gemini" and args.host == "127.0.0.1" and args.port == 9999
    emu = cli.build_emulator(args)
    assert emu.api_key == "k" and emu.models == ("a", "b")
    state = emu.behaviours.snapshot()
    assert state["default"]["chunks"] == 3 and state["default"]["first_token_delay"] == 0.5
    assert state["failure_rate"]["rate"] == 0.2 and state["failure_rate"]["behaviour"]["status"] == 429
    with pytest.raises(SystemExit):
        parser.parse_args(["emulate", "mistral"])


@pytest.mark.integration
def test_python_dash_m_serves_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "polyroute.emulators", "anthropic", "--port", "0",
                             "--api-key", "k", "--text", "from the cli"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        match = re.search(r"listening on (http://\S+)", line[0] if line else "")
        assert match, f"no address printed: {line!r}"
        base = match.group(1)
        answer = request(base, "POST", "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                         body={"model": "claude-haiku-4-5", "max_tokens": 8,
                               "messages": [{"role": "user", "content": "x"}]})
        assert answer.status == 200 and answer.json()["content"][0]["text"] == "from the cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["openai", "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err
