"""HTTPClient conformance against a real nginx (a private instance on loopback ports): Content-Length
and chunked bodies, gzip, 204/304/HEAD, keep-alive reuse and server-side closes, pool bounds, body
limits, backpressure, and TLS with SNI and certificate checks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from polyroute.transport import BodyTooLarge, ConnectError, HTTPClient
from polyroute.transport.connection import HIGH_WATER
from tests.helpers.nginx import missing, nginx_binary, nginx_process
from tests.helpers.services import free_port

pytestmark = pytest.mark.integration

JSON = '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}'

CONF = """\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp_body;
  proxy_temp_path {d}/tmp_proxy;
  fastcgi_temp_path {d}/tmp_fcgi;
  uwsgi_temp_path {d}/tmp_uwsgi;
  scgi_temp_path {d}/tmp_scgi;
  types {{ text/plain txt; application/octet-stream bin; }}
  keepalive_timeout 60s;
  keepalive_requests 10000;
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    location = /json {{ default_type application/json; return 200 '{json}'; }}
    location = /echo {{
      default_type text/plain;
      return 200 "$request_method $request_uri|$http_host|$http_user_agent|$http_accept_encoding|$content_length|$http_x_custom";
    }}
    location = /empty {{ return 204; }}
    location /chunked/ {{ ssi on; ssi_types text/plain; }}
    location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 1; gzip_comp_level 1; }}
    location /static/ {{ }}
  }}
  server {{
    listen 127.0.0.1:{ka_port};
    keepalive_requests 3;
    keepalive_timeout 1s;
    location / {{ default_type text/plain; return 200 "ka"; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    location / {{ default_type text/plain; return 200 "$ssl_server_name|$ssl_protocol|$server_protocol"; }}
  }}
}}
"""


@dataclass
class Nginx:
    port: int
    ka_port: int
    tls_port: int
    www: Path
    cert: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def nginx() -> Iterator[Nginx]:
    nginx_binary()
    if shutil.which("openssl") is None:
        missing("openssl")
    with tempfile.TemporaryDirectory(prefix="polyroute-nginx-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)  # nginx workers may run as another user
        www = d / "www"
        for sub in ("static", "chunked", "gz"):
            (www / sub).mkdir(parents=True)
        text = b"".join(b"line %d of the fixture text\n" % i for i in range(20000))
        (www / "static" / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
        (www / "static" / "small.txt").write_bytes(b"small file\n")
        (www / "chunked" / "data.txt").write_bytes(text)
        (www / "gz" / "data.txt").write_bytes(text)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
             "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )
        ports = free_port(), free_port(), free_port()
        conf = d / "nginx.conf"
        conf.write_text(CONF.format(d=d, port=ports[0], ka_port=ports[1], tls_port=ports[2], json=JSON))
        with nginx_process(d, conf):
            yield Nginx(ports[0], ports[1], ports[2], www, d / "cert.pem")


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    c = HTTPClient()
    yield c
    await c.close()


async def until(cond: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll a condition the event loop makes true (bounded; fails the test when it never does)."""
    for _ in range(int(seconds / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


async def wait_ready(c: HTTPClient, url: str) -> None:
    # The pid file appears before the sockets listen; retry connection refusals for a moment.
    deadline = time.monotonic() + 10
    while True:
        try:
            await c.request("GET", url)
            return
        except ConnectError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_content_length_bodies_reuse_one_connection(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    opened = client.stats()["opened"]
    for _ in range(20):
        r = await client.request("POST", nginx.url("/json"), headers={"Content-Type": "application/json"}, body=b"{}")
        assert r.status == 200 and r.body == JSON.encode() and r.headers["content-length"] == str(len(JSON))
        assert r.headers["Content-Type"] == "application/json"
    assert client.stats()["opened"] == opened and client.stats()["stale_retries"] == 0


async def test_what_nginx_receives(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    r = await client.request("POST", nginx.url("/echo?a=1&b=%20"), headers={"X-Custom": "v1"}, body=b"12345")
    assert r.body.decode() == f"POST /echo?a=1&b=%20|127.0.0.1:{nginx.port}|polyroute/0.1|gzip, deflate|5|v1"


async def test_chunked_body(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    expected = (nginx.www / "chunked" / "data.txt").read_bytes()
    r = await client.request("GET", nginx.url("/chunked/data.txt"))
    assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
    assert r.body == expected
    resp = await client.stream("GET", nginx.url("/chunked/data.txt"))
    assert b"".join([c async for c in resp]) == expected and resp.complete


async def test_gzip_is_decoded_buffered_and_streamed(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    expected = (nginx.www / "gz" / "data.txt").read_bytes()
    r = await client.request("GET", nginx.url("/gz/data.txt"))
    assert r.headers["content-encoding"] == "gzip" and r.body == expected
    resp = await client.stream("GET", nginx.url("/gz/data.txt"))
    pieces = [c async for c in resp]
    assert b"".join(pieces) == expected
    opened = client.stats()["opened"]
    r = await client.request("GET", nginx.url("/gz/data.txt"), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers and r.body == expected
    assert client.stats()["opened"] == opened  # still the same kept-alive connection


async def test_no_body_answers_keep_the_connection(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    opened = client.stats()["opened"]
    assert (await client.request("GET", nginx.url("/empty"))).status == 204
    head = await client.request("HEAD", nginx.url("/static/small.txt"))
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "11"
    etag = head.headers["etag"]
    r = await client.request("GET", nginx.url("/static/small.txt"), headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b""
    assert (await client.request("GET", nginx.url("/static/small.txt"))).body == b"small file\n"
    assert client.stats()["opened"] == opened


async def test_server_closing_after_keepalive_requests(nginx: Nginx, client: HTTPClient) -> None:
    url = f"http://127.0.0.1:{nginx.ka_port}/"
    await wait_ready(client, url)
    start = client.stats()["opened"]
    for _ in range(9):
        assert (await client.request("GET", url)).body == b"ka"
    # nginx answers the 3rd request on each connection with "Connection: close".
    assert client.stats()["opened"] - start == 3 and client.stats()["stale_retries"] == 0


async def test_idle_connection_closed_by_the_server_is_not_reused(nginx: Nginx, client: HTTPClient) -> None:
    url = f"http://127.0.0.1:{nginx.ka_port}/"
    await wait_ready(client, url)
    await until(lambda: not client.stats()["idle"], 10)  # nginx closes idle ones after keepalive_timeout 1s
    opened = client.stats()["opened"]
    assert (await client.request("GET", url)).body == b"ka"
    assert client.stats()["opened"] == opened + 1 and client.stats()["stale_retries"] == 0


async def test_concurrency_is_bounded_by_max_connections(nginx: Nginx) -> None:
    c = HTTPClient(max_connections=4)
    await wait_ready(c, nginx.url("/json"))
    results = await asyncio.gather(*(c.request("GET", nginx.url("/json")) for _ in range(200)))
    assert all(r.body == JSON.encode() for r in results)
    assert c.stats()["opened"] <= 4 and c.stats()["connections"] <= 4
    await c.close()


async def test_big_body_buffered_streamed_and_limited(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    digest = hashlib.sha256((nginx.www / "static" / "big.bin").read_bytes()).hexdigest()
    assert hashlib.sha256((await client.request("GET", nginx.url("/static/big.bin"))).body).hexdigest() == digest
    limited = HTTPClient(max_body_size=1024 * 1024)
    with pytest.raises(BodyTooLarge):
        await limited.request("GET", nginx.url("/static/big.bin"))
    assert limited.stats()["connections"] == 0
    # A stream is not limited, and a consumer that does not read pauses the socket.
    resp = await limited.stream("GET", nginx.url("/static/big.bin"))
    conn = resp._conn
    assert conn is not None
    await until(lambda: conn._paused)
    assert resp._size < HIGH_WATER + 1024 * 1024
    h = hashlib.sha256()
    async for chunk in resp:
        h.update(chunk)
    assert h.hexdigest() == digest and limited.stats()["idle"] == 1
    await limited.close()


async def test_abandoned_stream_closes_its_connection(nginx: Nginx, client: HTTPClient) -> None:
    await wait_ready(client, nginx.url("/json"))
    before = client.stats()
    resp = await client.stream("GET", nginx.url("/static/big.bin"))
    await anext(aiter(resp))
    resp.release()
    after = client.stats()
    assert after["connections"] == before["connections"] - 1 and after["idle"] == before["idle"] - 1
    assert (await client.request("GET", nginx.url("/json"))).status == 200


async def test_tls_with_sni_over_a_resolved_name(nginx: Nginx) -> None:
    ctx = ssl.create_default_context(cafile=str(nginx.cert))
    c = HTTPClient(ssl_context=ctx)
    url = f"https://localhost:{nginx.tls_port}/"
    deadline = time.monotonic() + 10
    while True:
        try:
            r = await c.request("GET", url)
            break
        except ConnectError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    sni, proto, http = r.body.decode().split("|")
    assert sni == "localhost" and proto in ("TLSv1.2", "TLSv1.3") and http == "HTTP/1.1"
    opened = c.stats()["opened"]
    for _ in range(5):
        assert (await c.request("GET", url)).status == 200
    assert c.stats()["opened"] == opened  # kept alive over TLS
    # An IP address is checked against the certificate's IP SAN and sends no SNI.
    r = await c.request("GET", f"https://127.0.0.1:{nginx.tls_port}/")
    assert r.body.decode().split("|")[0] == ""
    await c.close()


async def test_tls_certificate_is_verified_against_the_system_store(nginx: Nginx) -> None:
    c = HTTPClient()  # system CAs: the self-signed certificate must be refused
    with pytest.raises(ConnectError, match="certificate verify failed"):
        for _ in range(100):  # ride out the start-up window, when the port may still refuse
            try:
                await c.request("GET", f"https://localhost:{nginx.tls_port}/")
            except ConnectError as exc:
                if "certificate" in str(exc):
                    raise
                await asyncio.sleep(0.05)
    assert c.stats()["connections"] == 0
    await c.close()
