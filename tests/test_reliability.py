"""Reliability, round 2: what a hostile or careless user tries, and the clean outcome of each.

Classes (docs/reliability.md lists each promise beside these tests): decompression bombs refused
from the header before decoding, a model not known to be a hair model, two runs on one output
folder, input folder == output folder, numbers out of range, file names too long for the
filesystem, resuming a killed run, and no empty output folder after a refusal.

The tiny models are the bare converted ones of the ``tiny_tflite`` fixture (no hairseg metadata, so
they also exercise the "accepted from tensor shapes alone" warning).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hairseg_edge import imageio
from hairseg_edge.cli import app
from hairseg_edge.errors import InputError, UnverifiedModelWarning
from hairseg_edge.imageio import image_size_from_header, read_image, read_note, write_image
from hairseg_edge.outputs import LOCK_NAME, OutputFolder, fit_name
from hairseg_edge.runtime import unverified_model_message
from hairseg_edge.synth import render_sample

REPO = Path(__file__).resolve().parents[1]
WARNING = "hairseg-edge: warning: "


def invoke(*args: str | os.PathLike[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


def errors(result) -> list[str]:
    """stderr lines that are not the unverified-model warning."""
    return [ln for ln in result.stderr.strip().splitlines() if ln and not ln.startswith(WARNING)]


def head(path: Path, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    rgb, _ = render_sample(np.random.default_rng(seed), size[0], size[1], hair=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)
    return path


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


# ==================================================================================================
# 1. Decompression bombs: the size is read from the header, refused before decoding
# ==================================================================================================


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_bomb(width: int, height: int) -> bytes:
    """A complete, tiny PNG (IHDR, one IDAT, IEND) whose header announces ``width x height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def jpeg_header_bomb(width: int, height: int, progressive: bool = False) -> bytes:
    """A real small JPEG whose SOF segment is rewritten to claim ``width x height``."""
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8),
                           [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_header_bomb(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 12, 0, 0, 54) + info + b"\0" * 12


def webp_header_bomb(width: int, height: int) -> bytes:
    vp8x = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_header_bomb(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, width * height)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd


BOMBS = {
    "png_30000x30000.png": (png_header_bomb, 30000, 30000),
    "jpeg_65000x65000.jpg": (jpeg_header_bomb, 65000, 65000),
    "bmp_20000x20000.bmp": (bmp_header_bomb, 20000, 20000),
    "webp_16000x16000.webp": (webp_header_bomb, 16000, 16000),
    "tiff_40000x40000.tif": (tiff_header_bomb, 40000, 40000),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_header_sizes_are_read_without_decoding(name):
    build, width, height = BOMBS[name]
    assert image_size_from_header(build(width, height))[1] == (width, height)


def test_header_sizes_match_what_opencv_decodes_for_real_files():
    image = np.zeros((37, 53, 3), np.uint8)
    for suffix, flags in [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []),
                          (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                          (".tif", [])]:
        ok, buf = cv2.imencode(suffix, image, flags)
        assert image_size_from_header(buf.tobytes())[1] == (53, 37), (suffix, flags)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_run_refuses_a_bomb_from_its_header_in_one_line(tmp_path, tiny_tflite, name):
    build, width, height = BOMBS[name]
    bomb = tmp_path / name
    bomb.write_bytes(build(width, height))
    result = invoke("run", bomb, "--model", tiny_tflite["float32"], "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.stdout + result.stderr
    [line] = errors(result)
    assert str(bomb) in line and f"{width}x{height}" in line and "too large" in line
    assert not (tmp_path / "out").exists()


def test_a_bomb_among_good_images_is_reported_and_the_rest_processed(tmp_path, tiny_tflite):
    src = tmp_path / "src"
    head(src / "a.jpg")
    (src / "b.png").write_bytes(png_header_bomb(30000, 30000))
    head(src / "c.jpg", seed=2)
    result = invoke("run", src, "--model", tiny_tflite["float32"], "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert any("b.png" in ln and "too large" in ln for ln in errors(result))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_mask.png", "c_mask.png"]


def test_every_reader_refuses_a_bomb_before_decoding(tmp_path, tiny_tflite):
    """eval (data set images and masks), bench --image, export's calibration reader and the
    training reader all decode through imageio.read_image / read_mask."""
    from hairseg_edge.export.image_sets import load_rgb
    from hairseg_edge.data import Sample, load_sample

    data = tmp_path / "data"
    head(data / "images" / "a.jpg")
    (data / "images" / "b.png").write_bytes(png_header_bomb(30000, 30000))
    write_image(data / "masks" / "a.png", np.zeros((48, 64), np.uint8))
    (data / "masks" / "b.png").write_bytes(png_header_bomb(30000, 30000))
    result = invoke("eval", tiny_tflite["float32"], "--data", data)
    assert result.exit_code == 2 and "b.png" in errors(result)[-1] and "too large" in errors(result)[-1]

    bomb = data / "images" / "b.png"
    result = invoke("bench", tiny_tflite["float32"], "--image", bomb, "--runs", "1")
    assert result.exit_code == 2 and "too large" in errors(result)[-1] and str(bomb) in errors(result)[-1]

    sample = Sample("b", bomb, data / "masks" / "b.png", "folder")
    for read in (lambda: load_sample(sample), lambda: load_rgb(sample), lambda: imageio.read_mask(bomb)):
        with pytest.raises(InputError, match="too large"):
            read()


def test_a_format_whose_header_is_not_read_is_refused_not_decoded_blind(tmp_path):
    ppm = tmp_path / "x.ppm"
    ppm.write_bytes(b"P6\n30000 30000\n255\n" + b"\0" * 30)
    with pytest.raises(InputError, match="unsupported format"):
        read_image(ppm)
    damaged = tmp_path / "d.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 20 + b"\xff\xd9")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(damaged)


def test_opencvs_own_pixel_limit_is_one_line_not_a_traceback(tmp_path):
    image = head(tmp_path / "a.png")
    env = {**cli_env(), "OPENCV_IO_MAX_IMAGE_PIXELS": "100"}  # OpenCV's limit below the image's size
    proc = subprocess.run([sys.executable, "-c", "from hairseg_edge.imageio import read_image\n"
                           "from hairseg_edge.errors import InputError\n"
                           f"try:\n    read_image({str(image)!r})\nexcept InputError as e:\n    print(e)"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert str(image) in proc.stdout and "OpenCV" in proc.stdout and "Traceback" not in proc.stderr


def test_a_video_whose_frames_are_too_large_is_refused_before_the_first_frame(tmp_path, monkeypatch,
                                                                               tiny_tflite):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    monkeypatch.setattr(imageio, "MAX_PIXELS", 64 * 48 - 1)  # the header check, at a tiny scale
    result = invoke("run", path, "--model", tiny_tflite["float32"], "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = errors(result)
    assert str(path) in line and "64x48" in line and "too large" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_real_png_bomb_is_refused_with_little_memory(tmp_path, tiny_tflite):
    """A real, decodable 30000x30000 PNG (1-bit, about 110 kB): decoding it would take 2.7 GB. The
    refusal comes from its header; the process's peak RSS (wait4) stays far below 1 GB."""
    width = height = 30000
    row = b"\0" + b"\0" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    assert bomb.stat().st_size < 1_000_000
    # Linux keeps a process's peak RSS across fork and exec, so a child forked straight from this
    # (large) pytest process would report pytest's own size: a small launcher process forks the
    # command and reports the peak of its child alone.
    launcher = ("import json, resource, subprocess, sys\n"
                "proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
                "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
                "print(json.dumps({'rc': proc.returncode, 'stderr': proc.stderr.decode(), 'peak_kb': peak}))\n")
    proc = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "hairseg_edge", "run", str(bomb),
                           "--model", str(tiny_tflite["float32"]), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=cli_env(), timeout=300, check=True)
    report = json.loads(proc.stdout)
    stderr = report["stderr"]
    assert report["rc"] == 2, stderr
    assert "30000x30000" in stderr and "Traceback" not in stderr
    peak_mb = report["peak_kb"] / 1024
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB"
    print(f"peak RSS of the refusing process: {peak_mb:.0f} MB")


# ==================================================================================================
# 2. A model not known to be a hair model
# ==================================================================================================


def test_a_model_accepted_from_shapes_alone_warns_in_one_line_on_every_command(tmp_path, tiny_tflite):
    model = tiny_tflite["float32"]
    image = head(tmp_path / "a.jpg")
    data = tmp_path / "data"
    head(data / "images" / "a.jpg")
    write_image(data / "masks" / "a.png", np.zeros((48, 64), np.uint8))
    for args in (["run", image, "--model", model, "--out", tmp_path / "o1"],
                 ["eval", model, "--data", data]):
        result = invoke(*args)
        assert result.exit_code == 0, result.stderr
        warnings = [ln for ln in result.stderr.splitlines() if ln.startswith(WARNING)]
        assert len(warnings) == 1 and str(model) in warnings[0]
        assert "not known to be a hair model" in warnings[0] and "--adapter hairseg" in warnings[0]
        confirmed = invoke(*args[:-1], str(args[-1]) + "b" if args[0] == "run" else args[-1],
                           "--adapter", "hairseg")
        assert confirmed.exit_code == 0 and WARNING not in confirmed.stderr
    bench = invoke("bench", model, "--end-to-end", "--runs", "2", "--warmup", "0", "--threads", "1,2")
    assert bench.exit_code == 0, bench.stderr
    assert [ln for ln in bench.stderr.splitlines() if ln.startswith(WARNING)] == [
        f"{WARNING}{model}: {unverified_model_message('hairseg')}"]  # once, not per thread count
    info = invoke("info", model)
    assert "tensor shapes alone" in info.stdout


def test_the_segmenter_says_why_a_model_is_unverified(tiny_tflite):
    from hairseg_edge.runtime import Segmenter

    with pytest.warns(UnverifiedModelWarning, match="not known to be a hair model"), \
            Segmenter(tiny_tflite["float32"]) as seg:
        assert seg.unverified is not None
    with Segmenter(tiny_tflite["float32"], adapter="hairseg") as seg:
        assert seg.unverified is None


def test_a_selfie_segmenter_is_flagged(tmp_path, peers_dir):
    selfie = peers_dir / "selfie_segmentation.tflite"
    if not selfie.is_file():
        pytest.skip(f"{selfie} not found")
    result = invoke("run", REPO / "examples" / "astronaut.png", "--model", selfie, "--out", tmp_path / "o")
    assert result.exit_code == 0
    assert any(ln.startswith(WARNING) and "not known to be a hair model" in ln
               for ln in result.stderr.splitlines())


# ==================================================================================================
# 3. Two runs on one output folder
# ==================================================================================================


HOLD_LOCK = """
import sys, time
from hairseg_edge.outputs import OutputFolder
folder = OutputFolder(sys.argv[1])
folder.claim()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_holders_lock_is_stale(tmp_path,
                                                                                        tiny_tflite):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE,
                              env=cli_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        image = head(tmp_path / "a.jpg")
        proc = subprocess.run([sys.executable, "-m", "hairseg_edge", "run", str(image), "--model",
                               str(tiny_tflite["float32"]), "--out", str(out)],
                              capture_output=True, text=True, env=cli_env(), timeout=120, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"in use by another hairseg-edge run (PID {holder.pid})" in proc.stderr
        assert not (out / "a_mask.png").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # SIGKILL left its lock file: stale, the kernel freed the lock
    again = invoke("run", image, "--model", tiny_tflite["float32"], "--out", out)
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png"]


def test_two_real_runs_at_once_never_write_the_same_file(tmp_path, tiny_tflite):
    src = tmp_path / "src"
    for k in range(40):
        head(src / f"p{k:02d}.jpg", seed=k, size=(120, 160))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hairseg_edge", "run", str(src), "--model", str(tiny_tflite["float32"]),
           "--out", str(out), "--overlay", "--soft", "--adapter", "hairseg"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=cli_env()) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    # One run did the work. The other was either refused while the first held the folder, or
    # started after it finished and found every output done by this same request (exit 0).
    assert codes in ([0, 0], [0, 2]), results
    for code, stderr in results:
        if code == 2:
            assert "in use by another hairseg-edge run" in stderr and len(stderr.strip().splitlines()) == 1
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 40 * 3 and not [n for n in names if n.startswith(".")]
    for path in out.iterdir():
        assert cv2.imread(str(path)) is not None, path


def test_a_file_created_meanwhile_by_another_process_is_not_clobbered(tmp_path):
    final = tmp_path / "x.png"
    with pytest.raises(InputError, match="written meanwhile by another process"):
        with imageio.atomic_path(final) as tmp:
            tmp.write_bytes(b"ours")
            final.write_bytes(b"theirs")  # another process, between our check and our rename
    assert final.read_bytes() == b"theirs" and list(tmp_path.iterdir()) == [final]


# ==================================================================================================
# 4. Input folder == output folder
# ==================================================================================================


@pytest.mark.parametrize("as_glob", [False, True])
def test_a_second_run_with_the_input_folder_as_output_skips_its_own_outputs(tmp_path, tiny_tflite,
                                                                             as_glob):
    folder = tmp_path / "photos"
    head(folder / "a.jpg")
    head(folder / "b.png", seed=1)
    source = str(folder / "*") if as_glob else str(folder)
    args = ["run", source, "--model", tiny_tflite["float32"], "--out", folder, "--overlay"]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "a.jpg", "a_mask.png", "a_overlay.jpg", "b.png", "b_mask.png", "b_overlay.png"]
    # Other runs (another model, other options) into it skip them too, rather than refusing them.
    other = invoke("run", source, "--model", tiny_tflite["float32"], "--out", folder, "--soft", "--force")
    assert other.exit_code == 0 and not list(folder.glob("*_mask_*"))


# ==================================================================================================
# 5. Numbers out of range
# ==================================================================================================


def _numeric_options():
    """(command, option) for every int or float option of every command (Typer's parsed form)."""
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            if param.opts[0].startswith("--") and descriptor is not None and \
                    descriptor.annotation in (int, float):
                yield name, param


def test_every_numeric_option_of_every_command_is_bounded():
    found = list(_numeric_options())
    assert len(found) >= 20  # run, bench, eval, export and train all have some
    unbounded = [f"{name} {param.opts[0]}" for name, param in found if param.callback is None]
    assert not unbounded, unbounded


@pytest.mark.parametrize("value", ["-1", "0", "100000", "99999999999", "nan", "inf", "1e300"])
def test_every_numeric_option_refuses_out_of_range_values_naming_it(value):
    for name, param in _numeric_options():
        if param.type_descriptor.annotation is int and not value.lstrip("-").isdigit():
            continue
        low_ok = name == "train" and param.opts[0] in ("--seed", "--patience", "--average-last") or \
            param.opts[0] in ("--warmup", "--max-drop", "--min-agreement", "--prune", "--distill-weight",
                             "--recolor-strength")
        if value == "0" and low_ok:
            continue
        if value == "100000" and param.opts[0] in ("--seed", "--limit", "--frames", "--runs",
                                                   "--warmup", "--calib-count", "--steps-per-epoch",
                                                   "--finetune-steps", "--epochs", "--patience",
                                                   "--average-last"):
            continue
        result = invoke(name, param.opts[0], value)
        assert result.exit_code == 2, (name, param.opts[0], value, result.stderr)
        assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
        assert param.opts[0] in result.stderr and "must be" in result.stderr, result.stderr


@pytest.mark.parametrize("threads", ["100000", "99999999999"])
def test_huge_thread_counts_are_refused_in_a_real_process_not_a_segfault(tmp_path, threads):
    image = head(tmp_path / "a.jpg")
    proc = subprocess.run([sys.executable, "-m", "hairseg_edge", "run", str(image), "--threads", threads,
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        f"hairseg-edge: --threads must be between 1 and 64, got {threads}"
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="--threads"):
        from hairseg_edge.runtime import load_model

        load_model(REPO / "hairseg_edge" / "models" / "missing.tflite", threads=100000)


# ==================================================================================================
# 6. File names too long for the filesystem
# ==================================================================================================


def test_derived_names_are_shortened_deterministically_to_fit():
    stem = "é" * 200  # 400 bytes
    name = fit_name(stem, "_overlay.jpg")
    assert len(name.encode()) <= 255 and name.endswith("_overlay.jpg") and "~" in name
    assert fit_name(stem, "_overlay.jpg") == name and fit_name(stem + "x", "_overlay.jpg") != name
    assert fit_name("short", "_mask.png") == "short_mask.png"


@pytest.mark.parametrize("stem", ["x" * 246, "é" * 123])
def test_a_250_byte_name_with_every_output_is_processed_and_the_batch_continues(tmp_path, tiny_tflite,
                                                                                 stem):
    src = tmp_path / "src"
    head(src / f"{stem}.jpg")
    head(src / "z.jpg", seed=1)
    out = tmp_path / "out"
    args = ["run", src, "--model", tiny_tflite["float32"], "--out", out, "--overlay", "--soft",
            "--recolor", "copper"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 8 and all(len(n.encode()) <= 255 for n in names)
    assert {"z_mask.png", "z_overlay.jpg", "z_matte.png", "z_recolor.jpg"} <= set(names)
    again = invoke(*args)  # the same shortened names are found again: finished, kept
    assert again.exit_code == 0 and sorted(p.name for p in out.iterdir()) == names


# ==================================================================================================
# 7. Resume after a kill
# ==================================================================================================


def test_a_rerun_of_the_same_request_completes_missing_outputs_and_keeps_finished_ones(tmp_path,
                                                                                      tiny_tflite):
    image = head(tmp_path / "a.jpg")
    out = tmp_path / "out"
    args = ["run", image, "--model", tiny_tflite["float32"], "--out", out, "--overlay", "--soft"]
    assert invoke(*args).exit_code == 0
    mask = out / "a_mask.png"
    assert read_note(mask)  # each output names the request that wrote it
    before = mask.stat().st_mtime_ns
    (out / "a_overlay.jpg").unlink()  # killed after the mask and matte, before the overlay
    again = invoke(*args)
    assert again.exit_code == 0, again.stderr
    assert (out / "a_overlay.jpg").exists() and mask.stat().st_mtime_ns == before
    # Another request (other options, another model's bytes) may not take those files over.
    other = invoke(*args, "--recolor", "red")
    assert other.exit_code == 2 and "already exists" in errors(other)[0]
    assert not (out / "a_recolor.jpg").exists()
    mask.write_bytes(mask.read_bytes() + b"edited by the user")  # no longer what the run wrote? still
    # ours by its note: a file of the same request is kept, never rewritten without --force.
    assert invoke(*args).exit_code == 0


def test_a_run_killed_midway_is_finished_by_rerunning_it(tmp_path, tiny_tflite):
    src = tmp_path / "src"
    for k in range(60):
        head(src / f"p{k:02d}.png", seed=k, size=(240, 320))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hairseg_edge", "run", str(src), "--model", str(tiny_tflite["float32"]),
           "--out", str(out), "--overlay", "--soft", "--adapter", "hairseg"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*_mask.png"))) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Finished outputs only: a hidden .NAME.XXXXXXXX.tmp.png is the write the kill interrupted.
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if not p.name.startswith(".")}
    assert 0 < len(done_before) < 180, "the kill came too late to test a resume"
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    for name, mtime in done_before.items():
        assert (out / name).stat().st_mtime_ns == mtime, name
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert len(visible) == 180
    for path in out.glob("*.png"):
        assert cv2.imread(str(path)) is not None, path
    # The killed run's half-written temporary file (if the kill fell on a write) is gone too.
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_a_run_removes_the_temporaries_a_killed_run_left(tmp_path, tiny_tflite):
    image = head(tmp_path / "a.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".a_mask.k3x9_q2z.tmp.png", out / "sub" / ".b_overlay.abcdefgh.tmp.jpg"]
    for path in stale:
        path.write_bytes(b"\x89PNG half written")
    mine = [out / ".notes.tmp.txt", out / "draft.tmp.png"]  # a user's files: not this tool's pattern
    for path in mine:
        path.write_text("keep")
    result = subprocess.run([sys.executable, "-m", "hairseg_edge", "run", str(image), "--model",
                             str(tiny_tflite["float32"]), "--out", str(out), "--adapter", "hairseg"],
                            capture_output=True, text=True, env=cli_env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "keep" for p in mine)


# ==================================================================================================
# 8. No output folder left by a refusal
# ==================================================================================================


def test_no_output_folder_is_left_by_any_refusal(tmp_path, tiny_tflite):
    image = head(tmp_path / "a.jpg")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_bomb(30000, 30000))
    not_a_video = tmp_path / "v.mp4"
    not_a_video.write_bytes(b"not a video at all" * 10)
    fake_model = tmp_path / "fake.tflite"
    fake_model.write_bytes(b"\0" * 64)
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    (bad_only / "x.png").write_bytes(png_header_bomb(30000, 30000))
    (bad_only / "y.jpg").write_bytes(b"")
    model = ["--model", tiny_tflite["float32"]]
    cases = {
        "no camera": ["99", *model],
        "bomb": [bomb, *model],
        "every input bad": [bad_only, *model],
        "adapter mismatch": [image, *model, "--adapter", "mediapipe-hair"],
        "not a model": [image, "--model", fake_model],
        "not a video": [not_a_video, *model],
        "missing source": [tmp_path / "nope.jpg", *model],
        "threads": [image, *model, "--threads", "100000"],
        "frames": [image, *model, "--frames", "0"],
        "bad colour": [image, *model, "--recolor", "nocolour"],
        "show without display": [image, *model, "--show"],
    }
    for what, args in cases.items():
        out = tmp_path / "made" / "for" / what.replace(" ", "_")
        result = invoke("run", *args, "--out", out)
        assert result.exit_code == 2, (what, result.stderr)
        assert not (tmp_path / "made").exists(), what
    existing = tmp_path / "existing"
    existing.mkdir()
    assert invoke("run", bomb, *model, "--out", existing).exit_code == 2
    assert existing.is_dir() and not list(existing.iterdir())  # a folder the user made stays


def test_the_output_folder_claim_cleans_up_after_itself(tmp_path):
    out = tmp_path / "a" / "b"
    with OutputFolder(out) as folder:
        folder.claim()
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / "a").exists()
    with OutputFolder(out) as folder:
        folder.claim()
        (out / "x_mask.png").write_bytes(b"x")
    assert sorted(p.name for p in out.iterdir()) == ["x_mask.png"]
