#!/usr/bin/env python3
"""``make check-web``: the bundled model in a real browser, checked against ``hairseg-edge run``.

Debian's Chromium, driven headless by Selenium through Debian's chromedriver (no browser download),
opens the example page (examples/web, served from 127.0.0.1 by this script) where MediaPipe's
``@mediapipe/tasks-vision`` runs the bundled int8 model in WebAssembly. For each photo (the sample
``examples/astronaut.png`` and the first validation photos of each data set found in
``$HAIRSEG_DATA`` or ``../shared/data``, read in place, never copied) it:

1. gives the photo to the page's file input, as a user would;
2. reads the page's hair mask back (``window.hairseg.maskPng()``, 0/255 at the photo's size);
3. compares it with ``hairseg-edge run``'s ``<stem>_mask.png`` of the same photo (IoU);
4. times MediaPipe's ``segment()`` on the page's model input (``window.hairseg.timeSegment``).

It also checks that a file which is not an image gets a visible message on the page, and that the
live webcam mode runs on Chromium's fake camera. It saves a screenshot of the page showing the
recoloured sample photo (``--screenshot``; default examples/web/build/screenshot.png, git-ignored),
and with ``--results FILE.md`` a results table (and FILE.json) with ``hairseg-edge bench`` of the same
run beside the browser's times. An existing --screenshot/--results file is kept unless ``--force``.

The last line reads ``web: agreement IoU X.XXXX over N images, Y.Y ms/frame (wasm)``: the mean of the
per-image IoUs, and the median ``segment()`` time. Exit codes: 0 passed or skipped; 1 the agreement
is under ``--min-iou`` (0.97) or a page check failed; 2 bad usage (selenium missing: run it through
``make check-web``, which installs it into .venv).

Chromium and chromedriver are installed with apt-get where missing, when running as root; otherwise
(or where npm is missing) it prints one line saying it skipped and exits 0 (``--no-skip``: 1).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import serve_web  # noqa: E402  (a sibling script, not a package)

SAMPLE = REPO / "examples" / "astronaut.png"
SPLITS_DIR = REPO / "hairseg_edge" / "splits"
SHARED_DATA = REPO.parent / "shared" / "data"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MIN_IOU = 0.97
#: Debian's package for each program the check drives.
BROWSER_PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}
#: A headless Chromium that works as root in a container and talks to nothing but localhost.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check",
    # The live mode: Chromium's own test-pattern camera, allowed without a permission prompt.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
)
WINDOW_SIZE = (900, 820)
DEFAULT_SCREENSHOT = serve_web.BUILD_DIR / "screenshot.png"


class Skip(Exception):
    """The check cannot run here (no browser and no root, no npm): one line, exit 0."""


class CheckFailed(Exception):
    """The page misbehaved: one line, exit 1."""


@dataclass(frozen=True)
class Agreement:
    name: str
    iou: float
    web_hair: int
    run_hair: int
    segment_ms: float
    size: str = ""  # "WxH"


# ---- pure logic (tests/test_web.py) ------------------------------------------------------------------


def decode_mask_png(data_url: str) -> np.ndarray:
    """A ``data:image/png;base64,...`` mask from the page -> boolean HxW (hair = nonzero)."""
    import cv2

    prefix = "data:image/png;base64,"
    if not isinstance(data_url, str) or not data_url.startswith(prefix):
        raise ValueError("the page did not return a PNG data URL")
    raw = np.frombuffer(base64.b64decode(data_url[len(prefix):]), dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("the page's mask PNG does not decode")
    return image > 127


def compare(name: str, web_mask: np.ndarray, run_mask: np.ndarray, segment_ms: float) -> Agreement:
    """The agreement of the page's mask with run's (IoU; two empty masks agree fully)."""
    from hairseg_edge.metrics import iou

    if web_mask.shape != run_mask.shape:
        raise CheckFailed(f"web: {name}: the page's mask is {web_mask.shape[1]}x{web_mask.shape[0]}, "
                          f"run's is {run_mask.shape[1]}x{run_mask.shape[0]}")
    return Agreement(name, iou(web_mask, run_mask), int(web_mask.sum()), int(run_mask.sum()),
                     segment_ms, f"{web_mask.shape[1]}x{web_mask.shape[0]}")


def summary_line(results: Sequence[Agreement]) -> str:
    """The last line: mean per-image IoU and the median segment() time."""
    mean_iou = sum(r.iou for r in results) / len(results)
    ms = statistics.median(r.segment_ms for r in results)
    return f"web: agreement IoU {mean_iou:.4f} over {len(results)} images, {ms:.1f} ms/frame (wasm)"


def passed(results: Sequence[Agreement], min_iou: float = MIN_IOU) -> bool:
    """Whether the mean IoU, rounded as printed, reaches ``min_iou``."""
    return bool(results) and round(sum(r.iou for r in results) / len(results), 4) >= min_iou


def validation_photos(data_dirs: Sequence[Path], per_set: int) -> list[Path]:
    """The first ``per_set`` photos of each data set's recorded validation split (never trained on).

    A folder with no recorded split (someone's own data set) gives its first photos by name.
    """
    photos: list[Path] = []
    seen: set[Path] = set()
    if per_set < 1:
        return photos
    for folder in data_dirs:
        folder = Path(folder)
        images = folder / "images"
        if not images.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        split = SPLITS_DIR / f"{folder.name}_val.txt"
        if split.is_file():
            ids = [line.strip() for line in split.read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
            candidates = (next((images / f"{i}{s}" for s in IMAGE_SUFFIXES
                                if (images / f"{i}{s}").is_file()), None) for i in ids)
        else:
            candidates = (p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        chosen = []
        for path in candidates:
            if path is not None:
                chosen.append(path)
            if len(chosen) == per_set:
                break
        photos.extend(chosen)
    return photos


def data_dirs_from_env() -> list[Path]:
    dirs = []
    if os.environ.get("HAIRSEG_DATA"):
        dirs.append(Path(os.environ["HAIRSEG_DATA"]))
    if SHARED_DATA.is_dir():
        dirs.extend(sorted(p for p in SHARED_DATA.iterdir() if p.is_dir()))
    return dirs


# ---- the browser ---------------------------------------------------------------------------------------


def find_browser() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in BROWSER_PACKAGES}


def ensure_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed with apt-get when missing (root only)."""
    found = find_browser()
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(BROWSER_PACKAGES[name] for name in missing)
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise Skip(f"{', '.join(missing)} not installed and installing needs root with apt-get "
                       f"(apt-get install {packages})")
        print(f"web: installing {packages} with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages.split()]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise Skip(f"apt-get could not install {packages}: {last}")
        found = find_browser()
        if None in found.values():
            raise Skip(f"{packages} installed but chromium/chromedriver are still not on PATH")
    return found["chromium"], found["chromedriver"]  # type: ignore[return-value]


def start_driver(chromium: str, chromedriver: str, user_data_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def wait_for(driver, script: str, timeout: float, what: str):
    """Poll a JavaScript expression until it is truthy; CheckFailed naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        error = driver.execute_script("return window.hairseg && window.hairseg.error;")
        if error:
            raise CheckFailed(f"web: the page failed: {error}")
        if time.monotonic() > deadline:
            raise CheckFailed(f"web: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def load_photo(driver, path: Path, timeout: float) -> dict:
    """Give the page a photo through its file input; its published result once segmented."""
    from selenium.webdriver.common.by import By

    before = driver.execute_script("return [window.hairseg.seq, window.hairseg.messageSeq];")
    driver.find_element(By.ID, "file").send_keys(str(path))
    wait_for(driver, f"window.hairseg.seq > {before[0]} || window.hairseg.messageSeq > {before[1]}",
             timeout, f"the page to segment {path.name}")
    state = driver.execute_script("return window.hairseg;")
    if state["messageSeq"] > before[1]:
        raise CheckFailed(f"web: {path.name}: the page said: {state['message']}")
    return state["last"]


def check_refusal(driver, folder: Path, timeout: float) -> str:
    """A text file given as a photo must give a visible message naming it."""
    from selenium.webdriver.common.by import By

    not_image = folder / "notes-not-an-image.txt"
    not_image.write_text("this is not a picture\n")
    before = driver.execute_script("return window.hairseg.messageSeq;")
    driver.find_element(By.ID, "file").send_keys(str(not_image))
    wait_for(driver, f"window.hairseg.messageSeq > {before}", timeout, "a message about a non-image file")
    box = driver.find_element(By.ID, "message")
    if not box.is_displayed() or not_image.name not in box.text:
        raise CheckFailed(f"web: a non-image file gave no visible message naming it (got {box.text!r})")
    return box.text


def check_live(driver, frames: int, timeout: float) -> float:
    """Start the webcam mode (Chromium's fake camera), let ``frames`` frames through, stop it."""
    from selenium.webdriver.common.by import By

    start, messages = driver.execute_script("return [window.hairseg.seq, window.hairseg.messageSeq];")
    driver.find_element(By.ID, "camera").click()
    wait_for(driver, f"(window.hairseg.last && window.hairseg.last.mode === 'VIDEO' && "
                     f"window.hairseg.seq >= {start + frames}) || window.hairseg.messageSeq > {messages}",
             timeout, f"{frames} webcam frames")
    state = driver.execute_script("return window.hairseg;")
    driver.find_element(By.ID, "camera").click()
    if not state["last"] or state["last"]["mode"] != "VIDEO":
        raise CheckFailed(f"web: the live mode did not run: {state['message']}")
    return float(state["last"]["frameMs"])


def save_screenshot(driver, path: Path, max_bytes: int = 300_000) -> int:
    """The page as a PNG, recompressed (and reduced to a palette when still too big)."""
    import cv2

    raw = np.frombuffer(driver.get_screenshot_as_png(), dtype=np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if ok and png.nbytes > max_bytes:
        # 6 bits per channel: invisible on a photo at screen size, and PNG's filters love it.
        ok, png = cv2.imencode(".png", (bgr & 0xFC), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise CheckFailed("web: could not encode the screenshot")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png.tobytes())
    os.replace(tmp, path)
    return png.nbytes


# ---- the reference -------------------------------------------------------------------------------------


def run_masks(photos: Sequence[Path], folder: Path) -> dict[Path, np.ndarray]:
    """``hairseg-edge run`` on each photo (the bundled model): its mask by photo."""
    from hairseg_edge.imageio import read_mask

    inputs = folder / "inputs"
    out = folder / "run-out"
    inputs.mkdir()
    names = {}
    for index, photo in enumerate(photos):
        # Links, not copies: the data stays where it is; a prefix keeps two same-named photos apart.
        link = inputs / f"{index:02d}-{photo.name}"
        link.symlink_to(photo.resolve())
        names[photo] = link.stem
    # The page runs the model once on the whole frame: compare with run's single pass (--roi off).
    done = subprocess.run([sys.executable, "-m", "hairseg_edge", "run", str(inputs), "--roi", "off",
                           "--out", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CheckFailed(f"web: hairseg-edge run failed (exit {done.returncode}): {last}")
    return {photo: read_mask(out / f"{stem}_mask.png") > 0 for photo, stem in names.items()}


def native_bench(folder: Path, runs: int = 100) -> dict:
    """``hairseg-edge bench`` of the bundled model (LiteRT, 1 thread, invoke only), in this run."""
    out = folder / "bench.json"
    done = subprocess.run([sys.executable, "-m", "hairseg_edge", "bench", "--runs", str(runs),
                           "--json", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CheckFailed(f"web: hairseg-edge bench failed (exit {done.returncode}): {last}")
    return json.loads(out.read_text())[0]


def machine_and_versions(chromium: str) -> tuple[str, str]:
    """'AMD EPYC ..., 2 cores' and the versions that matter for these numbers."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    browser = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=False)
    package = json.loads((serve_web.VISION_PACKAGE / "package.json").read_text())
    versions = [browser.stdout.strip() or "chromium (version unknown)",
                f"@mediapipe/tasks-vision {package['version']}",
                f"python {platform.python_version()}"]
    for name in ("hairseg-edge", "ai-edge-litert", "selenium"):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{name} {version(name)}")
    return f"{cpu}, {os.cpu_count()} cores", ", ".join(versions)


def write_results(path: Path, results: Sequence[Agreement], frame_ms: Sequence[float], bench: dict,
                  chromium: str) -> None:
    """A results table (markdown) with the browser and the native numbers of this one run."""
    machine, versions = machine_and_versions(chromium)
    wasm = statistics.median(r.segment_ms for r in results)
    lines = [
        f"# The bundled model in the browser vs native ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {machine}; {versions}",
        "",
        "Written by `make check-web WEB_ARGS=\"--results benchmarks/results/web_wasm.md --force\"` "
        "(scripts/check_web.py): all numbers from one run. Browser: headless Chromium, MediaPipe "
        "`ImageSegmenter` (WebAssembly, CPU delegate, IMAGE mode) on the page's letterboxed model "
        "input: `segment()` (with MediaPipe's image upload and mask copy), the median over the photos "
        "of each photo's median of `--repeats` calls; the page's clock ticks in 0.1 ms steps (no "
        "cross-origin isolation). The whole frame adds the page's JavaScript letterbox, resize back "
        "and recolour at the photo's size (first pass per photo). Native: `hairseg-edge bench` "
        "(LiteRT + XNNPACK, 1 thread, invoke only).",
        "",
        "| runtime | what is timed | p50 ms |",
        "| --- | --- | --- |",
        f"| browser (wasm) | `segment()` | {wasm:.2f} |",
        f"| browser (wasm) | whole frame in the page | {statistics.median(frame_ms):.2f} |",
        f"| native LiteRT | `hairseg-edge bench` invoke | {bench['p50_ms']:.2f} |",
        "",
        "| photo | size | IoU with `hairseg-edge run` | hair pixels (page / run) | segment ms | "
        "whole frame ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r, ms in zip(results, frame_ms):
        lines.append(f"| {r.name} | {r.size} | {r.iou:.4f} | {r.web_hair} / {r.run_hair} | "
                     f"{r.segment_ms:.2f} | {ms:.1f} |")
    lines += ["", summary_line(results), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    # The same numbers for scripts, next to the table (as the other benchmarks/results files).
    record = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "versions": versions,
              "wasm_segment_p50_ms": wasm, "page_frame_p50_ms": statistics.median(frame_ms),
              "native_bench": bench, "summary": summary_line(results),
              "photos": [{**dataclasses.asdict(r), "frame_ms": ms} for r, ms in zip(results, frame_ms)]}
    json_path = path.with_suffix(".json")
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, json_path)


# ---- main ----------------------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> list[Agreement]:
    chromium, chromedriver = ensure_browser()
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise UsageError("selenium is not installed in this Python: run `make check-web`, which "
                         "installs it into .venv") from None
    from hairseg_edge.errors import HairsegError

    try:
        serve_web.prepare(quiet=True)
    except HairsegError as err:
        raise CheckFailed(f"web: {err}") from None
    except serve_web.SetupError as err:
        if shutil.which("npm") is None:
            raise Skip(str(err)) from None
        raise CheckFailed(f"web: {err}") from None

    photos = [SAMPLE, *args.images, *validation_photos(data_dirs_from_env(), args.per_set)]
    results: list[Agreement] = []
    frame_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hairseg-check-web-") as tmp:
        folder = Path(tmp)
        reference = run_masks(photos, folder)
        server = serve_web.make_server(0, quiet=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = start_driver(chromium, chromedriver, folder / "chromium-profile")
        try:
            driver.get(f"http://127.0.0.1:{server.server_port}/")
            wait_for(driver, "window.hairseg && window.hairseg.ready", args.timeout,
                     "MediaPipe and the model to load")
            for photo in photos:
                last = load_photo(driver, photo, args.timeout)
                web_mask = decode_mask_png(driver.execute_script("return window.hairseg.maskPng();"))
                times = driver.execute_script("return window.hairseg.timeSegment(arguments[0]);",
                                              args.repeats)
                result = compare(photo.name, web_mask, reference[photo], statistics.median(times))
                results.append(result)
                frame_ms.append(float(last["frameMs"]))
                print(f"web: {photo.name}: {last['width']}x{last['height']}, IoU {result.iou:.4f} "
                      f"(hair pixels {result.web_hair} in the page, {result.run_hair} from run), "
                      f"segment {result.segment_ms:.1f} ms, whole frame {last['frameMs']:.1f} ms",
                      flush=True)
                if photo == SAMPLE:
                    size = save_screenshot(driver, args.screenshot)
                    print(f"web: screenshot of the recoloured sample: {args.screenshot} "
                          f"({size / 1000:.0f} KB)", flush=True)
            message = check_refusal(driver, folder, args.timeout)
            print(f"web: a non-image file: {message}", flush=True)
            if args.live_frames:
                live_ms = check_live(driver, args.live_frames, args.timeout)
                print(f"web: live mode on the fake camera: {args.live_frames}+ frames, last "
                      f"{live_ms:.1f} ms/frame", flush=True)
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
        bench = native_bench(folder)
        print(f"web: native, same machine and run: hairseg-edge bench p50 {bench['p50_ms']:.2f} ms "
              f"(LiteRT, 1 thread) against the page's segment() "
              f"{statistics.median(r.segment_ms for r in results):.2f} ms (wasm)", flush=True)
        if args.results is not None:
            write_results(args.results, results, frame_ms, bench, chromium)
            print(f"web: results table: {args.results}", flush=True)
    return results


class UsageError(Exception):
    """Bad usage: one line, exit 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, nargs="*", default=[],
                        help="more photos to compare (besides the sample and validation photos)")
    parser.add_argument("--per-set", type=int, default=2,
                        help="validation photos per data set found (default 2; 0 = none)")
    parser.add_argument("--min-iou", type=float, default=MIN_IOU)
    parser.add_argument("--repeats", type=int, default=7, help="segment() timings per photo")
    parser.add_argument("--live-frames", type=int, default=10,
                        help="webcam frames to run on the fake camera (0 = skip the live check)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per page step")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="where to save the page's screenshot (PNG; default "
                             "examples/web/build/screenshot.png, replaced on every run)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also write a results table (markdown) here, e.g. "
                             "benchmarks/results/web_wasm.md")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --screenshot or --results file")
    parser.add_argument("--no-skip", action="store_true", help="a skip is a failure (exit 1)")
    args = parser.parse_args(argv)
    for photo in args.images:
        if not photo.is_file():
            print(f"web: {photo}: no such file", file=sys.stderr)
            return 2
    args.images = [p.resolve() for p in args.images]
    for given in (args.screenshot, args.results):
        if given is not None and given.exists() and not args.force:
            print(f"web: {given}: exists; add --force to replace it", file=sys.stderr)
            return 2
    args.screenshot = (args.screenshot or DEFAULT_SCREENSHOT).resolve()
    if args.results is not None:
        args.results = args.results.resolve()
    try:
        results = check(args)
    except Skip as why:
        print(f"web: skipped: {why}")
        return 1 if args.no_skip else 0
    except UsageError as err:
        print(f"web: {err}", file=sys.stderr)
        return 2
    except CheckFailed as err:
        print(str(err))
        return 1
    line = summary_line(results)
    if not passed(results, args.min_iou):
        print(f"web: FAILED: agreement under {args.min_iou}", flush=True)
        print(line)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
