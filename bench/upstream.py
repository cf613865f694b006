"""nginx on loopback as the canned OpenAI upstream: one port per response shape.

nginx cannot branch on the request body, so JSON, a short SSE stream and a 500-chunk SSE stream
each get their own port; gateways are configured with one model per port.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import payloads
import procstat
from netutil import free_port, wait_http

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp_body;
  proxy_temp_path {d}/tmp_proxy;
  fastcgi_temp_path {d}/tmp_fcgi;
  uwsgi_temp_path {d}/tmp_uwsgi;
  scgi_temp_path {d}/tmp_scgi;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  sendfile on;
  tcp_nodelay on;
  etag off;
  server_tokens off;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  types {{ }}
  # POST to a static file is a 405 in nginx; turn that into an internal GET of the canned file.
  # SSI (with nothing to include) makes nginx send the stream chunked, without Content-Length, as
  # OpenAI does; some gateways (Portkey) fail on a Content-Length event stream.
  server {{
    listen 127.0.0.1:{json_port} backlog=4096;
    root {d}/www;
    location / {{ default_type application/json; return 200 '{chat}'; }}
  }}
  server {{
    listen 127.0.0.1:{sse_port} backlog=4096;
    root {d}/www;
    location / {{ default_type text/event-stream; ssi on; ssi_types text/event-stream;
                 error_page 405 =200 /sse_long.txt; try_files /sse_long.txt =404; }}
  }}
  server {{
    listen 127.0.0.1:{sse_short_port} backlog=4096;
    root {d}/www;
    location / {{ default_type text/event-stream; ssi on; ssi_types text/event-stream;
                 error_page 405 =200 /sse_short.txt; try_files /sse_short.txt =404; }}
  }}
}}
"""


@dataclass
class Upstream:
    json_port: int
    sse_port: int
    sse_short_port: int
    proc: subprocess.Popen[bytes]

    def base(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    @property
    def json_url(self) -> str:
        return self.base(self.json_port)

    @property
    def sse_url(self) -> str:
        return self.base(self.sse_port)

    @property
    def sse_short_url(self) -> str:
        return self.base(self.sse_short_port)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        procstat.stop(self.proc)


def start(workdir: Path, cpus: str | None, prefix: list[str] | None = None) -> Upstream:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = workdir / "nginx"
    (d / "www").mkdir(parents=True, exist_ok=True)
    (d / "www" / "chat.json").write_bytes(payloads.chat_completion())
    (d / "www" / "sse_long.txt").write_bytes(payloads.sse_stream(payloads.STREAM_CHUNKS_LONG))
    (d / "www" / "sse_short.txt").write_bytes(payloads.sse_stream(payloads.STREAM_CHUNKS_SHORT))
    ports = free_port(), free_port(), free_port()
    conf = d / "nginx.conf"
    chat = payloads.chat_completion().decode()
    # `return` avoids the file path entirely (2x the req/s of a static file here); fits the 4 KiB token limit.
    assert "'" not in chat and "\\" not in chat and len(chat) < 4000
    conf.write_text(NGINX_CONF.format(d=d, json_port=ports[0], sse_port=ports[1], sse_short_port=ports[2], chat=chat))
    cmd = [nginx, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    cmd = [*(prefix or []), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "wb"))
    up = Upstream(ports[0], ports[1], ports[2], proc)
    body = payloads.chat_request()
    for port in ports:
        if not wait_http(up.base(port) + "/v1/chat/completions", 15, "POST", body, alive=lambda: proc.poll() is None):
            up.stop()
            raise RuntimeError(f"nginx did not come up: {(d / 'error.log').read_text()[-2000:]}")
    return up
