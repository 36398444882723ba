"""The browser example (examples/web) without a browser: its JavaScript against the Python package.

The page's own logic lives in examples/web/hairseg.js (no DOM, no MediaPipe), so Node runs it here
(tests/web_harness.mjs) on the same pixels as ``hairseg_edge``: the model input must be byte for byte
``contract.letterbox_image``'s, the mask exactly ``run``'s finish, the recolour within a level or two
of ``render.recolor``. Also the palette export, the build files, the static server, and the pure
parts of scripts/check_web.py (mask decoding, agreement, the summary line, photo choice, the skip).
MediaPipe in Chromium itself is ``make check-web``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from hairseg_edge import contract, render
from hairseg_edge.imageio import read_image

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "web_harness.mjs"
SAMPLE = REPO / "examples" / "astronaut.png"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def serve_web():
    yield _load("serve_web")


@pytest.fixture(scope="module")
def check_web(serve_web):
    yield _load("check_web")


def node(request: dict) -> dict:
    done = subprocess.run([NODE, str(HARNESS)], input=json.dumps(request), capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def unb64(text: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def rgba(rgb: np.ndarray) -> dict:
    h, w = rgb.shape[:2]
    data = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return {"width": w, "height": h, "data": b64(data)}


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth picture with edges and noise (random noise alone would hide rounding differences)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([127 + 120 * np.sin(xx / (7 + seed)), 127 + 120 * np.cos(yy / 11),
                     (xx + yy) % 256], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


# ---- the palette -------------------------------------------------------------------------------------


def test_recolor_settings_carry_render_palette_and_constants():
    settings = render.recolor_settings()
    json.dumps(settings)  # JSON-ready
    named = render.named_colors()
    assert list(settings["colors"])[:len(named)] == list(named)  # the palette's names first, then aliases
    assert settings["colors"] == {**{k: list(v) for k, v in named.items()},
                                  **{a: list(named[n]) for a, n in render.ALIASES.items()}}
    assert (settings["min_gain"], settings["max_gain"]) == (render._MIN_GAIN, render._MAX_GAIN)
    assert settings["min_weight"] == render._MIN_WEIGHT
    assert 0 < settings["threshold"] < 1 and 0 <= settings["strength"] <= 1


def test_build_writes_model_input_size_output_quantization_and_palette(serve_web, tmp_path):
    from hairseg_edge.models import default_model_path
    from hairseg_edge.runtime import Segmenter

    paths = serve_web.build_files(build_dir=tmp_path)
    model = default_model_path()
    assert paths["model"].read_bytes() == model.read_bytes()
    info = json.loads(paths["model.json"].read_text())
    with Segmenter(model) as seg:
        spec = seg.outputs[0]
        assert info["input_size"] == seg.input_size
        assert info["output"]["threshold"] == seg.threshold
        assert info["output"]["scale"] == pytest.approx(spec.scale)
        assert info["output"]["integer_threshold"] == contract.quantized_threshold(
            seg.threshold, spec.scale, spec.zero_point)
    assert json.loads(paths["palette.json"].read_text()) == render.recolor_settings()


def test_build_refuses_a_model_without_the_contract_in_one_line(serve_web, tmp_path):
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("not a model")
    from hairseg_edge.errors import InputError

    with pytest.raises((InputError, serve_web.SetupError)) as err:
        serve_web.build_files(not_a_model, build_dir=tmp_path / "build")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "build" / "model.json").exists()


# ---- the page's pixels against the package's ----------------------------------------------------------


@needs_node
@pytest.mark.parametrize("h,w", [(512, 512), (256, 256), (300, 200), (97, 211), (1000, 30), (150, 224)])
def test_letterbox_in_javascript_is_the_contract_byte_for_byte(h, w):
    rgb = photo(h, w, seed=h + w)
    expected, box = contract.letterbox_image(rgb, 224)
    answer = node({"op": "letterbox", "image": rgba(rgb), "size": 224})
    got = unb64(answer["input"], np.uint8).reshape(224, 224, 4)
    assert (answer["box"]["top"], answer["box"]["left"], answer["box"]["newH"], answer["box"]["newW"]) == (
        box.top, box.left, box.new_h, box.new_w)
    np.testing.assert_array_equal(got[..., :3], expected)
    assert (got[..., 3] == 255).all()


@needs_node
@pytest.mark.parametrize("h,w", [(512, 512), (171, 256), (224, 224), (480, 640)])
def test_unletterbox_in_javascript_is_runs_integer_finish(h, w):
    rng = np.random.default_rng(h * w)
    box = contract.letterbox_geometry(h, w, 224)
    # A smooth map with many values near the threshold, as the model gives at hair edges.
    yy, xx = np.mgrid[0:224, 0:224]
    q = np.clip(128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.integers(-3, 4, (224, 224)),
                0, 255).astype(np.uint8)
    scale, zero, threshold = 1 / 256, 0, 0.5
    q0 = contract.quantized_threshold(threshold, scale, zero)
    expected = contract.unletterbox_integers(q, box)
    answer = node({"op": "unletterbox", "small": b64((q.astype(np.float32) - zero) * scale),
                   "box": {"srcW": w, "srcH": h, "size": 224, "newW": box.new_w, "newH": box.new_h,
                           "top": box.top, "left": box.left},
                   "output": {"threshold": threshold, "scale": scale, "zero_point": zero,
                              "integer_threshold": q0}})
    mask = unb64(answer["mask"], np.uint8).reshape(h, w)
    prob = unb64(answer["prob"], np.float32).reshape(h, w)
    np.testing.assert_array_equal(mask > 0, expected > q0)
    np.testing.assert_allclose(prob, (expected.astype(np.float32) - zero) * scale, atol=1e-7)


@needs_node
def test_recolor_in_javascript_matches_render_recolor_on_the_sample_photo():
    from hairseg_edge.runtime import Segmenter
    from hairseg_edge.models import default_model_path

    rgb = read_image(SAMPLE)
    with Segmenter(default_model_path()) as seg:
        weight = seg.segment(rgb).probability
    palette = render.recolor_settings()
    for name, strength in (("copper", 1.0), ("platinum", 1.0), ("navy", 0.6)):
        expected = render.recolor(rgb, weight, name, strength=strength)
        answer = node({"op": "recolor", "image": rgba(rgb), "weight": b64(weight.astype(np.float32)),
                       "color": list(render.parse_color(name)), "palette": palette, "strength": strength})
        got = unb64(answer["image"], np.uint8).reshape(rgb.shape[0], rgb.shape[1], 4)[..., :3]
        diff = np.abs(got.astype(int) - expected.astype(int))
        changed = np.abs(expected.astype(int) - rgb.astype(int)).sum(axis=2) > 0
        assert changed.sum() > 1000, "the sample photo's hair was recoloured"
        # Float64 LAB with lookup tables in JS, float32 OpenCV in Python: a level or two apart.
        assert diff.max() <= 3, (name, diff.max())
        assert diff.mean() < 0.05, (name, diff.mean())


@needs_node
def test_no_hair_leaves_the_picture_unchanged_in_javascript():
    rgb = photo(40, 60, seed=3)
    answer = node({"op": "recolor", "image": rgba(rgb), "weight": b64(np.zeros((40, 60), np.float32)),
                   "color": [200, 40, 150], "palette": render.recolor_settings(), "strength": 1.0})
    got = unb64(answer["image"], np.uint8).reshape(40, 60, 4)[..., :3]
    np.testing.assert_array_equal(got, rgb)


@needs_node
def test_colour_parsing_in_javascript_agrees_with_render_parse_color():
    palette = render.recolor_settings()
    values = ["red", "Dark Brown", "dark_brown", "blond", "#aa33cc", "#a3c", "aa33cc", "170, 51, 204",
              "chartreuse", "256,0,0", "#12345", ""]
    answer = node({"op": "parse", "values": values, "palette": palette})
    for value, got in zip(values, answer["results"]):
        try:
            expected = list(render.parse_color(value))
        except Exception:
            assert isinstance(got, dict) and value in got["error"], (value, got)
        else:
            assert got == expected, value


@needs_node
def test_the_colour_menu_lists_each_colour_once_under_its_first_name():
    palette = render.recolor_settings()
    names = node({"op": "names", "palette": palette})["names"]
    assert len({tuple(palette["colors"][n]) for n in names}) == len(names)
    assert {tuple(v) for v in palette["colors"].values()} == {tuple(palette["colors"][n]) for n in names}
    firsts = {}
    for name, rgb in palette["colors"].items():
        firsts.setdefault(tuple(rgb), name)
    assert names == list(firsts.values())


# ---- the static server ---------------------------------------------------------------------------------


def test_server_binds_localhost_and_sends_module_and_wasm_types(serve_web):
    server = serve_web.make_server(0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert server.server_address[0] == "127.0.0.1"
        base = f"http://127.0.0.1:{server.server_port}/"
        with urllib.request.urlopen(base) as page:
            assert b'src="app.js"' in page.read()
        with urllib.request.urlopen(base + "hairseg.js") as script:
            assert script.headers["Content-Type"] == "text/javascript"
        assert serve_web.Handler.extensions_map[".wasm"] == "application/wasm"
        assert serve_web.Handler.extensions_map[".mjs"] == "text/javascript"
    finally:
        server.shutdown()
        server.server_close()


def test_serving_on_a_busy_port_is_one_line_and_exit_2(serve_web, monkeypatch, capsys):
    monkeypatch.setattr(serve_web, "prepare", lambda **_: None)
    busy = serve_web.make_server(0, quiet=True)
    try:
        assert serve_web.main(["--port", str(busy.server_port)]) == 2
    finally:
        busy.server_close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1" in err and "WEB_PORT" in err


def test_missing_npm_is_one_line_and_exit_2(serve_web, monkeypatch, capsys):
    monkeypatch.setattr(serve_web, "npm_install_needed", lambda: True)
    monkeypatch.setattr(serve_web.shutil, "which", lambda name: None)
    assert serve_web.main(["--prepare-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "npm" in err


# ---- scripts/check_web.py -----------------------------------------------------------------------------


def _data_url(mask: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    assert ok
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


def test_mask_from_the_page_decodes_and_compares(check_web):
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    decoded = check_web.decode_mask_png(_data_url(mask))
    np.testing.assert_array_equal(decoded, mask)
    assert check_web.compare("a", decoded, mask, 9.0).iou == 1.0
    worse = mask.copy()
    worse[5:20, 10:13] = False  # 45 of 300 hair pixels lost
    result = check_web.compare("a", decoded, worse, 9.0)
    assert result.iou == pytest.approx(255 / 300)
    with pytest.raises(ValueError):
        check_web.decode_mask_png("data:text/plain;base64,aGk=")
    with pytest.raises(check_web.CheckFailed):
        check_web.compare("a", mask, mask[:, :20], 9.0)


def test_agreement_gate_and_last_line(check_web):
    good = [check_web.Agreement("a", 1.0, 10, 10, 9.0), check_web.Agreement("b", 0.96, 9, 10, 11.0),
            check_web.Agreement("c", 0.99, 9, 10, 30.0)]
    line = check_web.summary_line(good)
    assert line == "web: agreement IoU 0.9833 over 3 images, 11.0 ms/frame (wasm)"
    assert check_web.passed(good)
    bad = good[:2] + [check_web.Agreement("c", 0.9, 9, 10, 30.0)]
    assert not check_web.passed(bad)  # mean 0.9533
    assert not check_web.passed([])
    assert check_web.passed([check_web.Agreement("a", 0.96996, 1, 1, 1.0)])  # prints as 0.9700


def test_validation_photos_follow_the_recorded_split(check_web, tmp_path):
    ids = [line for line in (REPO / "hairseg_edge" / "splits" / "figaro1k-hair-train_val.txt")
           .read_text().splitlines() if line and not line.startswith("#")]
    figaro = tmp_path / "figaro1k-hair-train" / "images"
    figaro.mkdir(parents=True)
    for i in [ids[1], ids[2], ids[0] + "-trained-on", "train-Frame99999"]:
        (figaro / f"{i}.jpg").write_bytes(b"x")
    own = tmp_path / "my-photos" / "images"
    own.mkdir(parents=True)
    for name in ("b.png", "a.jpg", "c.txt"):
        (own / name).write_bytes(b"x")
    chosen = check_web.validation_photos([figaro.parent, own.parent, figaro.parent], per_set=2)
    assert [p.name for p in chosen] == [f"{ids[1]}.jpg", f"{ids[2]}.jpg", "a.jpg", "b.png"]
    assert check_web.validation_photos([figaro.parent, own.parent], per_set=0) == []


def test_check_without_a_browser_and_without_root_skips_in_one_line(check_web, monkeypatch, capsys):
    monkeypatch.setattr(check_web.shutil, "which", lambda name: None)
    monkeypatch.setattr(check_web.os, "geteuid", lambda: 1000)
    assert check_web.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("web: skipped:") and "chromium" in out
    assert check_web.main(["--no-skip"]) == 1


def test_check_refuses_a_missing_extra_photo_with_exit_2(check_web, capsys, tmp_path):
    assert check_web.main(["--images", str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.jpg" in err


def test_check_keeps_an_existing_screenshot_or_results_file_without_force(check_web, capsys, tmp_path):
    for option in ("--screenshot", "--results"):
        existing = tmp_path / f"given{option.strip('-')}.out"
        existing.write_bytes(b"keep me")
        assert check_web.main([option, str(existing)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and existing.name in err and "--force" in err
        assert existing.read_bytes() == b"keep me"
