"""The dashboard's files (polyroute/ui/static), read once at start-up and served from memory.

Each file is kept plain and gzipped, with a content hash as its ETag, so a reload costs a 304. The
pages' only inline script is index.html's import map (browsers take import maps inline only); its
hash goes into the Content-Security-Policy, so no other inline script can run.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".txt": b"text/plain; charset=utf-8",
}
_INLINE_SCRIPT = re.compile(rb"<script[^>]*>(.*?)</script>", re.S)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: bytes
    content_type: bytes
    # CSP source expressions for the file's inline scripts ("'sha256-...'"), for HTML pages.
    script_hashes: str = ""


def _asset(name: str, data: bytes) -> Asset:
    ctype = TYPES.get(Path(name).suffix, b"application/octet-stream")
    gz = gzip.compress(data, 9, mtime=0) if len(data) > 1024 and not ctype.startswith(b"image/png") else None
    etag = b'"' + hashlib.sha256(data).hexdigest()[:24].encode() + b'"'
    hashes = ""
    if name.endswith(".html"):
        hashes = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
            for m in _INLINE_SCRIPT.finditer(data)
            if m.group(1).strip()
        )
    return Asset(data, gz if gz is not None and len(gz) < len(data) else None, etag, ctype, hashes)


@functools.cache
def load_assets() -> dict[str, Asset]:
    """{path relative to static/: asset}, e.g. "vendor/preact.js" (read once per process)."""
    root = resources.files("polyroute.ui").joinpath("static")
    out: dict[str, Asset] = {}

    def walk(node: object, prefix: str) -> None:
        for entry in node.iterdir():  # type: ignore[attr-defined]
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, name + "/")
            elif not entry.name.startswith("."):
                out[name] = _asset(name, entry.read_bytes())

    walk(root, "")
    return out
