"""A real nginx, run from the `nginx` block of a document, so the documented config cannot rot.

    with run_nginx(DOC, upstreams=[8081, 8082]) as base_url:   # "http://127.0.0.1:<port>"
        ...

The documented block is written for production (TLS on 443, instances on 10.0.0.x, the admin API
open to 10.0.0.0/24); the test version listens on loopback without TLS, proxies to the given
loopback ports and lets 127.0.0.1 reach /admin/. Everything else runs as written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.services import free_port, stop_process


def missing(what: str) -> None:
    """Skip a test whose tool is not installed; fail it under CI, where that is a broken machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed (scripts/setup --system installs it)")
    pytest.skip(f"{what} is not installed")


def nginx_binary() -> str:
    """The nginx executable (see `missing` when there is none)."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        missing("nginx")
    assert binary is not None
    return binary


@contextmanager
def nginx_process(d: Path, conf: Path) -> Iterator[None]:
    """nginx running `conf`, whose pid and error log are under `d`, from ready (its pid file is
    written) until the block ends."""
    binary = nginx_binary()
    proc = subprocess.Popen([binary, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not (d / "nginx.pid").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.communicate(timeout=5)[1].decode(errors="replace")
                log = d / "error.log"
                pytest.fail(f"nginx did not start: {err}{log.read_text() if log.exists() else ''}")
            time.sleep(0.02)
        yield
    finally:
        stop_process(proc)


def nginx_conf_from_doc(doc: Path, d: Path, listen: int, upstreams: Sequence[int]) -> str:
    """The first ```nginx block of `doc` as a runnable nginx.conf with its work files under `d`.

    The documented `server 10.0.0.x:...` lines are replaced by one line per port in `upstreams`,
    each keeping the parameters written after the address in the first documented line."""
    block = re.search(r"```nginx\n(.*?)```", doc.read_text(), re.S)
    assert block, f"{doc.name} has no nginx example"
    conf = block.group(1).replace("listen 443 ssl;", f"listen 127.0.0.1:{listen};")
    # The TLS lines, and `http2 on;` (nginx >= 1.25.1; the doc notes the older spelling).
    lines = [line for line in conf.splitlines() if not re.search(r"ssl_certificate|http2 on;", line)]
    servers = [i for i, line in enumerate(lines) if line.strip().startswith("server 10.0.0.")]
    assert servers, f"the upstream block of {doc.name}'s nginx example changed"
    m = re.match(r"(\s*)server \S+?(\s[^;#]*)?;", lines[servers[0]])
    assert m, lines[servers[0]]
    indent, params = m.group(1), (m.group(2) or "")
    first = servers[0]
    for i in reversed(servers):
        del lines[i]
    lines[first:first] = [f"{indent}server 127.0.0.1:{port}{params};" for port in upstreams]
    body = "\n".join(lines).replace("allow 10.0.0.0/24;", "allow 127.0.0.1;")
    return (
        f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        f"events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n"
        f"  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n"
        f"  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n{body}\n}}\n"
    )


@contextmanager
def run_nginx(doc: Path, upstreams: Sequence[int]) -> Iterator[str]:
    """nginx from `doc`'s example in front of the gateways on the `upstreams` loopback ports, until the
    block ends; yields its base URL ("http://127.0.0.1:<port>")."""
    # Not under pytest's tmp_path: its parents are private to this user, and nginx's workers may
    # run as another one (nobody when the tests run as root).
    with tempfile.TemporaryDirectory(prefix="polyroute-nginx-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        port = free_port()
        conf = d / "nginx.conf"
        conf.write_text(nginx_conf_from_doc(doc, d, port, upstreams))
        try:
            with nginx_process(d, conf):
                yield f"http://127.0.0.1:{port}"
        finally:
            # Shown by pytest when the test fails: why nginx answered 502/504, if it did.
            log = d / "error.log"
            errors = [x for x in log.read_text(errors="replace").splitlines() if "[error]" in x] if log.exists() else []
            if errors:
                print(f"nginx error log ({len(errors)} errors):", *errors[-20:], sep="\n")
