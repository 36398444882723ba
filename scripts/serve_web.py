#!/usr/bin/env python3
"""``make web``: set up the browser example (examples/web) and serve it on localhost.

Setting up means:

1. ``npm ci`` in examples/web when its node_modules/ is missing or older than package-lock.json:
   the pinned ``@mediapipe/tasks-vision`` (JavaScript + its WebAssembly files), so the page never
   fetches anything from a CDN;
2. ``examples/web/build/`` (git-ignored), written from this package, not copied by hand:
   ``hairseg_int8.tflite`` (the bundled model), ``model.json`` (its file name, input size and
   threshold, read from the model's embedded contract) and ``palette.json``
   (:func:`hairseg_edge.render.recolor_settings`: the named colours of ``run --recolor``).

Then it serves examples/web with Python's http.server, bound to 127.0.0.1, and prints the URL.
Ctrl-C stops it. Exit codes: 0 stopped by the user, 2 bad usage (npm missing, port in use).

    python scripts/serve_web.py [--port 8000] [--prepare-only]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEB_DIR = REPO / "examples" / "web"
BUILD_DIR = WEB_DIR / "build"
NODE_MODULES = WEB_DIR / "node_modules"
#: npm writes this file last in an install: present and newer than the lock file = up to date.
NPM_STAMP = NODE_MODULES / ".package-lock.json"
VISION_PACKAGE = NODE_MODULES / "@mediapipe" / "tasks-vision"
DEFAULT_PORT = 8000

#: Types a module script and WebAssembly need; the system's mime.types may not know .mjs or .wasm.
MIME_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
              ".json": "application/json", ".tflite": "application/octet-stream"}


class SetupError(Exception):
    """A one-line reason why the example cannot be set up (missing npm, failed install)."""


def npm_install_needed() -> bool:
    lock = WEB_DIR / "package-lock.json"
    return not (NPM_STAMP.is_file() and (VISION_PACKAGE / "wasm").is_dir()
                and NPM_STAMP.stat().st_mtime >= lock.stat().st_mtime)


def npm_install(*, quiet: bool = False) -> None:
    """``npm ci`` (exactly the locked versions) when node_modules is missing or stale."""
    if not npm_install_needed():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError("npm is not installed (Node.js 18+ with npm: e.g. apt-get install npm)")
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    done = subprocess.run(command, cwd=WEB_DIR, capture_output=quiet, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise SetupError(f"npm ci in {WEB_DIR} failed (exit {done.returncode})"
                         + (f": {detail[0]}" if detail else ""))


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_files(model: Path | None = None, build_dir: Path = BUILD_DIR) -> dict[str, Path]:
    """Write ``build_dir`` (build/): the model, model.json and palette.json; their paths by name."""
    from hairseg_edge.contract import quantized_threshold
    from hairseg_edge.models import default_model_path
    from hairseg_edge.render import recolor_settings
    from hairseg_edge.runtime import Segmenter

    model = Path(model) if model is not None else default_model_path()
    with Segmenter(model) as segmenter:
        if segmenter.contract is None:
            raise SetupError(f"{model}: no hairseg contract in its metadata (not a hairseg export?)")
        size, threshold = segmenter.input_size, segmenter.threshold
        spec = segmenter.outputs[0]
    # What the page needs to finish a frame the way run does (runtime.Segmenter.finish): a quantized
    # map is resized and thresholded as the model's integers.
    output: dict[str, object] = {"threshold": threshold}
    if spec.scale and not spec.per_channel:
        output.update(scale=float(spec.scale), zero_point=int(spec.zero_point),
                      integer_threshold=quantized_threshold(threshold, spec.scale, spec.zero_point))
    build_dir.mkdir(parents=True, exist_ok=True)
    paths = {"model": build_dir / "hairseg_int8.tflite", "model.json": build_dir / "model.json",
             "palette.json": build_dir / "palette.json"}
    _write_atomic(paths["model"], model.read_bytes())
    info = {"file": paths["model"].name, "input_size": size, "output": output, "source": model.name}
    _write_atomic(paths["model.json"], (json.dumps(info, indent=2) + "\n").encode())
    _write_atomic(paths["palette.json"], (json.dumps(recolor_settings(), indent=2) + "\n").encode())
    return paths


def prepare(*, quiet: bool = False) -> None:
    npm_install(quiet=quiet)
    build_files()


class Handler(http.server.SimpleHTTPRequestHandler):
    """http.server's static files, with the MIME types a module page needs and no caching."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class QuietHandler(Handler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


def make_server(port: int = 0, *, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server for examples/web on 127.0.0.1 (port 0 = any free port)."""
    handler = functools.partial(QuietHandler if quiet else Handler, directory=str(WEB_DIR))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", DEFAULT_PORT)))
    parser.add_argument("--prepare-only", action="store_true", help="set up, do not serve")
    args = parser.parse_args(argv)
    from hairseg_edge.errors import HairsegError

    try:
        prepare()
    except (SetupError, HairsegError) as err:
        print(f"web: {err}", file=sys.stderr)
        return 2
    if args.prepare_only:
        print(f"web: {WEB_DIR} is ready (node_modules/, build/)")
        return 0
    try:
        server = make_server(args.port)
    except OSError as err:
        print(f"web: cannot serve on 127.0.0.1:{args.port} ({err.strerror or err}); "
              "try make web WEB_PORT=8001", file=sys.stderr)
        return 2
    print(f"web: serving {WEB_DIR} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
