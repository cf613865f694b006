"""Idempotent installation of everything the benchmark needs, outside the project venv.

- apt: nginx (upstream), wrk (load generator)
- /work/peers/stack-extras: extra HTTP clients for the stack comparison only (pip --target)
- /work/peers/litellm/venv: LiteLLM proxy in its own venv
- /work/peers/portkey: Portkey gateway via npm
Each step is skipped when its marker (binary/import) is already present.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PEERS = Path("/work/peers")
STACK_EXTRAS = str(PEERS / "stack-extras")
LITELLM_VENV = PEERS / "litellm" / "venv"
PORTKEY_DIR = PEERS / "portkey"
PORTKEY_ENTRY = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def _run(cmd: list[str], timeout: float = 900) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=timeout)


def ensure_apt() -> None:
    missing = [p for p, b in (("nginx", "nginx"), ("wrk", "wrk")) if not shutil.which(b) and
               not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "install", "-y", "-q", *missing])
    # Debian's nginx package starts a system nginx on :80; the benchmark runs its own instance.


def ensure_stack_extras() -> None:
    if (Path(STACK_EXTRAS) / "pyreqwest").exists() and (Path(STACK_EXTRAS) / "httpx").exists() and \
            (Path(STACK_EXTRAS) / "aiosonic").exists():
        return
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", STACK_EXTRAS, "httpx", "pyreqwest", "aiosonic"])


def ensure_litellm() -> Path:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
        py = shutil.which("python3.11") or shutil.which("python3") or sys.executable
        if not (LITELLM_VENV / "bin" / "python").exists():
            _run([py, "-m", "venv", str(LITELLM_VENV)])
        _run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], timeout=1800)
    return exe


def ensure_portkey() -> Path:
    if not PORTKEY_ENTRY.exists():
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        if not (PORTKEY_DIR / "package.json").exists():
            (PORTKEY_DIR / "package.json").write_text('{"name": "portkey-bench", "private": true}\n')
        _run(["npm", "install", "--prefix", str(PORTKEY_DIR), "@portkey-ai/gateway"], timeout=1800)
    return PORTKEY_ENTRY


def ensure_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        try:
            _run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
    return True
