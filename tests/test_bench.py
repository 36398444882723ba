"""``hairseg-edge bench``: per-process measurements, JSON/CSV output, failing rows, end-to-end mode.

Runs are kept short (``--runs 5 --warmup 1``) on 32 px models: these tests check what is measured
and reported, not how fast this machine is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.bench import (
    RECORD_KEYS,
    BenchOptions,
    BenchResult,
    benchmark,
    measure,
    parse_threads,
    peak_rss_mb,
    results_csv,
    results_json,
    run_worker,
)
from hairseg_edge.cli import app
from hairseg_edge.errors import InputError
from hairseg_edge.imageio import write_image

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
QUICK = ["--runs", "5", "--warmup", "1"]


def assert_sane(record: dict, *, model: str, threads: int) -> None:
    assert set(RECORD_KEYS) <= set(record)
    assert record["model"] == model
    assert record["threads"] == threads and isinstance(record["threads"], int)
    assert record["size_bytes"] == Path(model).stat().st_size
    assert record["load_ms"] > 0 and record["first_ms"] > 0
    assert 0 < record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
    assert record["std_ms"] >= 0
    assert record["fps"] == pytest.approx(1000.0 / record["mean_ms"], rel=1e-3)
    assert 10 < record["peak_rss_mb"] < 4096
    assert "error" not in record


def test_parse_threads():
    assert parse_threads("1,2,4") == (1, 2, 4)
    assert parse_threads(" 2 , 2,1") == (2, 1)
    for bad in ("", "0", "1,-2", "two", "1.5"):
        with pytest.raises(InputError, match="--threads"):
            parse_threads(bad)


def test_options_are_validated():
    with pytest.raises(InputError, match="--runs"):
        BenchOptions(runs=0)
    with pytest.raises(InputError, match="--warmup"):
        BenchOptions(warmup=-1)
    with pytest.raises(InputError, match="thread"):
        BenchOptions(threads=())


def test_measure_in_process(tiny_tflite):
    result = measure(tiny_tflite["uint8"], 1, runs=5, warmup=1)
    record = result.to_dict()
    assert_sane(record, model=str(tiny_tflite["uint8"]), threads=1)
    assert record["input_shape"] == [1, 32, 32, 3] and record["input_dtype"] == "uint8"
    assert record["end_to_end"] is False and record["adapter"] == "hairseg"
    assert record["runs"] == 5
    assert BenchResult.from_dict(json.loads(json.dumps(record))).to_dict() == record


def test_measure_end_to_end_times_every_stage(tiny_tflite):
    result = measure(tiny_tflite["float32"], 1, runs=5, warmup=1, end_to_end=True)
    assert result.end_to_end and result.adapter == "hairseg"
    assert set(result.stages_ms) == {"read", "prepare", "infer", "post"}
    assert all(v > 0 for v in result.stages_ms.values())
    # the stages are the whole frame: their means add up to the mean frame time
    assert sum(result.stages_ms.values()) == pytest.approx(result.mean_ms, rel=0.05)
    # decoding a 1280x720 JPEG costs more than a 32 px model
    assert result.stages_ms["read"] > result.stages_ms["infer"]
    # the median frame from decoded pixels: no decode, and no more than the slowest whole frame
    without_read = result.mean_ms - result.stages_ms["read"]
    assert 0 < result.rgb_to_mask_p50_ms < result.p50_ms
    assert result.rgb_to_mask_p50_ms == pytest.approx(without_read, rel=0.5)
    assert BenchResult.from_dict(result.to_dict()).rgb_to_mask_p50_ms == pytest.approx(result.rgb_to_mask_p50_ms,
                                                                                     abs=1e-6)


def test_measure_end_to_end_with_flip_tta_times_the_flip_path(tiny_tflite, monkeypatch):
    """--flip-tta times the frame path of run/eval --flip-tta: a Segmenter that mirrors every frame."""
    from hairseg_edge import runtime

    opened = []

    class Spy(runtime.Segmenter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self.flip_tta)

    monkeypatch.setattr(runtime, "Segmenter", Spy)
    result = measure(tiny_tflite["uint8"], 1, runs=3, warmup=0, end_to_end=True, flip_tta=True)
    assert opened == [True] and result.ok and result.flip_tta
    record = result.to_dict()
    assert record["flip_tta"] is True and BenchResult.from_dict(record).flip_tta
    assert measure(tiny_tflite["uint8"], 1, runs=3, warmup=0, end_to_end=True).flip_tta is False
    assert opened == [True, False]


def test_any_valid_tflite_can_be_timed_but_end_to_end_needs_an_adapter(tiny_tflite):
    plain = measure(tiny_tflite["classifier"], 1, runs=3, warmup=0)
    assert plain.ok and plain.adapter is None
    with pytest.raises(InputError, match="not a hair segmentation model"):
        measure(tiny_tflite["classifier"], 1, runs=3, warmup=0, end_to_end=True)


def test_peak_rss_is_in_megabytes():
    assert 10 < peak_rss_mb() < 64 * 1024


def test_each_measurement_runs_in_its_own_process(tiny_tflite):
    """Workers report their own peak memory: a fresh process, not the test process's."""
    big = np.ones(300 * 1024 * 1024 // 8)  # the parent now holds ~300 MB more than a worker will
    options = BenchOptions(threads=(1, 2), runs=5, warmup=1)
    results = benchmark([tiny_tflite["float32"]], options)
    assert [r.threads for r in results] == [1, 2]
    for r in results:
        assert r.ok, r.error
        assert r.peak_rss_mb < peak_rss_mb() - 200
    del big


def test_a_failing_model_gets_one_row_with_its_reason(tiny_tflite, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_text("nope")
    options = BenchOptions(threads=(1, 2), runs=3, warmup=0)
    results = benchmark([bad, tiny_tflite["float32"]], options)
    assert [(Path(r.model).name, r.threads, r.ok) for r in results] == [
        ("bad.tflite", 1, False), ("tiny_float32.tflite", 1, True), ("tiny_float32.tflite", 2, True)]
    assert results[0].error == f"{bad}: not a TFLite model (no 'TFL3' file identifier)"
    record = results[0].to_dict()
    assert record["error"] and record["p50_ms"] is None and record["threads"] == 1


def test_a_crashing_worker_is_reported(tiny_tflite, monkeypatch):
    from hairseg_edge import bench

    def crashing_command(model, threads, options):
        return [sys.executable, "-c", "import os, sys; sys.stderr.write('boom\\n'); os.abort()"]

    monkeypatch.setattr(bench, "worker_command", crashing_command)
    result = run_worker(tiny_tflite["float32"], 1, BenchOptions(runs=1, warmup=0))
    assert not result.ok
    assert result.error.startswith("worker killed by signal") and result.error.endswith("boom")


def test_json_and_csv_formats(tiny_tflite):
    ok = measure(tiny_tflite["float32"], 2, runs=3, warmup=0, end_to_end=True)
    failed = BenchResult("missing.tflite", 1, error="missing.tflite: no such file")
    records = json.loads(results_json([ok, failed]))
    assert records[0]["stages_ms"].keys() == {"read", "prepare", "infer", "post"}
    assert records[0]["rgb_to_mask_p50_ms"] > 0 and "rgb_to_mask_p50_ms" not in records[1]
    assert records[1] == {**{k: None for k in RECORD_KEYS}, "model": "missing.tflite", "threads": 1,
                          "end_to_end": False, "flip_tta": False, "adapter": None, "runs": None,
                          "error": "missing.tflite: no such file"}
    rows = list(csv.DictReader(io.StringIO(results_csv([ok, failed]))))
    assert rows[0]["model"] == str(tiny_tflite["float32"]) and rows[0]["threads"] == "2"
    assert rows[0]["input_shape"] == "1x32x32x3" and float(rows[0]["read_ms"]) > 0
    assert rows[1]["error"] == "missing.tflite: no such file" and rows[1]["p50_ms"] == ""


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def test_bench_command_side_by_side_with_json_and_csv(tiny_tflite, tmp_path):
    out_json, out_csv = tmp_path / "out" / "bench.json", tmp_path / "bench.csv"
    models = [str(tiny_tflite["float32"]), str(tiny_tflite["uint8"])]
    result = runner.invoke(app, ["bench", *models, "--threads", "1,2", *QUICK, "--json",
                                 str(out_json), "--csv", str(out_csv)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("tiny_float32.tflite", "tiny_uint8.tflite", "p50", "FPS", "RSS MB"):
        assert name in result.stdout
    records = json.loads(out_json.read_text())
    assert [(r["model"], r["threads"]) for r in records] == [
        (models[0], 1), (models[0], 2), (models[1], 1), (models[1], 2)]
    for r in records:
        assert_sane(r, model=r["model"], threads=r["threads"])
    assert [r["input_dtype"] for r in records] == ["float32", "float32", "uint8", "uint8"]
    assert len(list(csv.DictReader(out_csv.open()))) == 4
    assert not list(tmp_path.glob("**/*.tmp*"))  # atomic writes leave no temporaries


def test_bench_command_failing_path_gets_a_row_and_exit_2(tiny_tflite, tmp_path):
    out_json = tmp_path / "bench.json"
    missing = tmp_path / "nowhere.tflite"
    result = runner.invoke(app, ["bench", str(missing), str(tiny_tflite["float32"]), *QUICK,
                                 "--json", str(out_json)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "nowhere.tflite" in result.stdout and "no such file" in result.stdout
    assert "tiny_float32.tflite" in result.stdout
    assert result.stderr.strip() == (f"hairseg-edge: 1 of 2 measurement(s) failed "
                                     f"(first: {missing}: no such file)")
    records = json.loads(out_json.read_text())  # the results are still written
    assert records[0]["error"] and records[1]["p50_ms"] > 0


def test_bench_command_end_to_end_with_an_image(tiny_tflite, tmp_path):
    image = tmp_path / "frame.png"
    write_image(image, np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    out_json = tmp_path / "e2e.json"
    result = runner.invoke(app, ["bench", str(tiny_tflite["int8"]), "--end-to-end", "--image",
                                 str(image), *QUICK, "--json", str(out_json)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "end-to-end" in result.stdout
    [record] = json.loads(out_json.read_text())
    assert record["end_to_end"] is True and record["adapter"] == "hairseg"
    assert set(record["stages_ms"]) == {"read", "prepare", "infer", "post"}


def test_bench_command_refuses_bad_options_before_running(tiny_tflite, tmp_path):
    existing = tmp_path / "taken.json"
    existing.write_text("[]")
    cases = [
        (["--json", str(existing)], "already exists (pass --force to overwrite)"),
        (["--threads", "0"], "--threads values must be integers between 1 and 64"),
        (["--runs", "0"], "--runs must be between 1 and 1000000"),
        (["--image", str(tmp_path / "none.png")], "no such file"),
        (["--flip-tta"], "--flip-tta is timed end to end"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["bench", str(tiny_tflite["float32"]), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert existing.read_text() == "[]"
    result = runner.invoke(app, ["bench", str(tiny_tflite["float32"]), *QUICK, "--json",
                                 str(existing), "--force"])
    assert result.exit_code == 0 and len(json.loads(existing.read_text())) == 1


def test_bench_command_default_model_is_the_bundled_int8(tmp_path):
    from hairseg_edge.models import bundled_model_path

    out_json = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", *QUICK, "--json", str(out_json)])
    assert result.exit_code == 0, result.output
    [record] = json.loads(out_json.read_text())
    assert record["model"] == str(bundled_model_path("int8"))
    assert_sane(record, model=record["model"], threads=1)


def test_bench_command_without_a_bundled_model_says_so_in_one_line(tmp_path, monkeypatch):
    """An install without the model files (a core wheel built without them): point the package's
    model folder at an empty one."""
    from hairseg_edge import models

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    result = runner.invoke(app, ["bench", *QUICK])
    assert result.exit_code == 2
    assert result.stderr.startswith("hairseg-edge: no model given and no bundled int8 model")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_as_a_real_process(tiny_tflite, tmp_path):
    out_json = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "hairseg_edge", "bench", str(tiny_tflite["uint8"]),
                           *QUICK, "--json", str(out_json)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "tiny_uint8.tflite" in proc.stdout
    [record] = json.loads(out_json.read_text())
    assert_sane(record, model=str(tiny_tflite["uint8"]), threads=1)
    assert "XNNPACK" not in proc.stdout


def test_bench_end_to_end_on_a_non_hair_model_is_a_failed_row(tiny_tflite, tmp_path):
    out_json = tmp_path / "e2e.json"
    result = runner.invoke(app, ["bench", str(tiny_tflite["classifier"]), "--end-to-end", *QUICK,
                                 "--json", str(out_json)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a hair segmentation model" in lines[0]
    [record] = json.loads(out_json.read_text())
    assert record["p50_ms"] is None and "expected 1 output" in record["error"]
