"""Re-vendor the dashboard's JavaScript libraries from npm (no build step; docs/dashboard.md).

    python ui/vendor.py            # fetch the pinned versions with `npm pack`, check, copy, write manifest
    python ui/vendor.py --check    # only check polyroute/ui/static/vendor against manifest.json

To upgrade a library: change its version below, run this, look at the diff, run the UI tests.
The tarball's integrity (sha512) is checked against the registry's before anything is copied;
files are copied unmodified (renamed to .js / .css so every Python install ships them).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "polyroute" / "ui" / "static" / "vendor"

# package -> (version, {file in the package tarball: name in static/vendor})
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "preact": ("11.2.0", {
        "package/dist/preact.mjs": "preact.js",
        "package/hooks/dist/hooks.mjs": "hooks.js",
        "package/LICENSE": "licenses/preact.LICENSE.txt",
    }),
    "htm": ("3.1.1", {
        "package/dist/htm.mjs": "htm.js",
        "package/LICENSE": "licenses/htm.LICENSE.txt",
    }),
    "uplot": ("1.6.32", {
        "package/dist/uPlot.iife.min.js": "uplot.js",
        "package/dist/uPlot.min.css": "uplot.css",
        "package/LICENSE": "licenses/uplot.LICENSE.txt",
    }),
}  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> None:
    manifest: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, files) in PACKAGES.items():
            spec = f"{name}@{version}"
            info = json.loads(subprocess.check_output(["npm", "view", spec, "dist", "license", "--json"], text=True))
            tgz_name = subprocess.check_output(["npm", "pack", spec, "--silent"], cwd=tmp, text=True).strip()
            tgz = Path(tmp) / tgz_name.splitlines()[-1]
            algo, _, want = info["dist"]["integrity"].partition("-")
            got = base64.b64encode(hashlib.new(algo, tgz.read_bytes()).digest()).decode()
            if got != want:
                raise SystemExit(f"{spec}: the tarball's {algo} does not match the registry's integrity")
            with tarfile.open(tgz) as tar:
                for member, target in files.items():
                    src = tar.extractfile(member)
                    if src is None:
                        raise SystemExit(f"{spec}: {member} is not in the package")
                    out = DEST / target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with out.open("wb") as fh:
                        shutil.copyfileobj(src, fh)
            manifest[name] = {
                "version": version,
                "license": info.get("license"),
                "integrity": info["dist"]["integrity"],
                "files": {target: {"from": member, "sha256": sha256(DEST / target)} for member, target in files.items()},
            }
    (DEST / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendored {', '.join(f'{n}@{v[0]}' for n, v in PACKAGES.items())} into {DEST}")


def check() -> int:
    manifest = json.loads((DEST / "manifest.json").read_text())
    bad = [
        target
        for pkg in manifest.values()
        for target, f in pkg["files"].items()
        if not (DEST / target).is_file() or sha256(DEST / target) != f["sha256"]
    ]
    for target in bad:
        print(f"modified or missing: {target}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    sys.exit(check() if ap.parse_args().check else fetch())
