"""Every table the CLI prints reads right at 80 columns and when piped: no number is cut or wrapped
("560…", "88.…"), no model path folded over many lines (issue 27)."""

from __future__ import annotations

import json
import re

from rich.console import Console
from typer.testing import CliRunner

from hairseg_edge.bench import BenchOptions, BenchResult
from hairseg_edge.cli import app
from hairseg_edge.cli._tables import LABEL_WIDTH, Column, print_table, short_labels

runner = CliRunner()
BOX = re.compile(r"[│┃┏┗┡└┌━─]")


def _render(draw) -> str:
    console = Console(width=80, record=True, color_system=None, force_terminal=False)
    draw(console)
    return console.export_text()


def _assert_whole(text: str, cells: list[str]) -> None:
    """Each cell appears on one line as a token of its own, and no table line is wider than 80."""
    for line in text.splitlines():
        if BOX.search(line):
            assert len(line) <= 80, line
    for cell in cells:
        pattern = r"(?<![\w.])" + re.escape(cell) + r"(?![\w.])"
        assert any(re.search(pattern, line) for line in text.splitlines()), (cell, text)


def test_a_wide_table_is_split_into_parts_that_keep_every_number_whole():
    columns = [Column("model", numeric=False, key=True)] + [Column(f"metric {i}") for i in range(14)]
    rows = [[f"model{r}"] + [f"{123456.789 * (r + 1) + i:,.3f}" for i in range(14)] for r in range(3)]
    text = _render(lambda c: print_table(c, columns, rows, title="wide"))
    _assert_whole(text, [cell for row in rows for cell in row])
    assert text.count("model1") >= 2  # the key column repeats in every part


def test_short_labels_are_stems_and_each_path_is_listed_once():
    paths = ["/a/very/long/folder/name/hairseg_int8.tflite", "/b/hairseg_int8.tflite",
             "/a/very/long/folder/name/hairseg_int8.tflite", "/c/" + "x" * 60 + "_pruned_qat.tflite"]
    labels, notes = short_labels(paths, ["hairseg", None, "hairseg", None])
    assert labels[:3] == ["hairseg_int8#1", "hairseg_int8#2", "hairseg_int8#1"]
    assert len(labels[3]) == LABEL_WIDTH and labels[3].endswith("_pruned_qat")
    assert notes == [f"hairseg_int8#1: {paths[0]} (hairseg)", f"hairseg_int8#2: {paths[1]}",
                     f"{labels[3]}: {paths[3]}"]


def test_bench_table_at_80_columns_keeps_every_number_and_path_whole():
    from hairseg_edge.cli.bench import _print_table

    long_path = "/home/someone/models/experiments/2026-12/" + "hairseg_int8_pruned50_qat_v17_final" * 2 \
        + ".tflite"
    results = [
        BenchResult(model=long_path, threads=t, size_bytes=250_454, input_shape=(1, 224, 224, 3),
                    input_dtype="uint8", load_ms=1180.18 * t, first_ms=40.81, p50_ms=560.33 + t,
                    p90_ms=588.95, p99_ms=1602.5, mean_ms=570.12, std_ms=12.34, fps=1.8, peak_rss_mb=172,
                    end_to_end=True, stages_ms={"read": 12.3, "prepare": 4.56, "infer": 560.1, "post": 9.9})
        for t in (1, 4)
    ] + [BenchResult(model="/tmp/missing.tflite", threads=1, error="/tmp/missing.tflite: no such file")]
    options = BenchOptions(threads=[1, 4], runs=200, warmup=5, end_to_end=True)
    text = _render(lambda c: _print_table(results, options, c))
    cells = []
    for r in results[:2]:
        cells += [f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.load_ms:.2f}",
                  f"{r.mean_ms:.2f} ± {r.std_ms:.2f}", f"{r.fps:.1f}", "0.25", "172", "12.3/4.6/560.1/9.9"]
    _assert_whole(text, cells)
    assert f": {long_path} (" not in text and f": {long_path}" in text  # listed once, on one line
    assert text.count(long_path) == 1
    assert "missing with 1 thread(s) failed: no such file" in text


def test_bench_command_piped_at_80_columns(tiny_tflite, tmp_path):
    out = tmp_path / "bench.json"
    models = [str(tiny_tflite["float32"]), str(tiny_tflite["uint8"])]
    result = runner.invoke(app, ["bench", *models, "--threads", "1,2", "--runs", "5", "--warmup", "1",
                                 "--json", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    cells = []
    for r in json.loads(out.read_text()):
        cells += [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['fps']:.1f}", f"{r['load_ms']:.2f}"]
    _assert_whole(result.stdout, cells)


def test_eval_table_at_80_columns(tiny_tflite, synthetic_folder_dataset, tmp_path):
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(tiny_tflite["uint8"]), "--data", str(synthetic_folder_dataset),
                                 "--reference", str(tiny_tflite["float32"]), "--max-drop", "1",
                                 "--json", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cells = [f"{report[k]:.4f}" for k in ("iou", "mean_iou", "f1", "precision", "recall", "accuracy",
                                           "boundary_f", "reference_iou", "agreement_iou")]
    _assert_whole(result.stdout, cells + [f"{report['p50_ms']:.2f}"])
    assert f"all photos, {report['n']} photos of" in result.stdout


def test_info_tables_at_80_columns(tiny_tflite):
    result = runner.invoke(app, ["info", str(tiny_tflite["uint8"]), "--json"])
    info = json.loads(result.stdout)
    result = runner.invoke(app, ["info", str(tiny_tflite["uint8"])], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    size = info["size_bytes"]
    _assert_whole(result.stdout, [f"{size:,}", str(list(info["inputs"][0]["shape"]))])
    for line in result.stdout.splitlines()[1:]:  # the first line is the model's path, never folded
        assert len(line) <= 80, line


def test_bench_pick_table_at_80_columns():
    from hairseg_edge.cli.bench import _print_pick_table
    from hairseg_edge.tier_pick import PickResult, TierTiming

    fast = TierTiming("default", "/opt/site-packages/hairseg_edge/models/hairseg_int8.tflite", 2.21,
                      {"mean": 0.8555}, True)
    large = TierTiming("large", "/opt/site-packages/hairseg_edge/models/hairseg_large_int8.tflite", 5.07,
                       {"mean": 0.8712}, False)
    pick = PickResult(budget_ms=4.5, threads=1, tiers=[fast, large], chosen=fast)
    text = _render(lambda c: _print_pick_table(pick, c))
    _assert_whole(text, ["2.21", "5.07", "0.8555", "0.8712", "picked", "hairseg_large_int8.tflite"])
