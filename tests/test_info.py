"""``hairseg-edge info`` and :mod:`hairseg_edge.inspect` on tiny converted models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hairseg_edge import tflite_meta
from hairseg_edge.cli import app
from hairseg_edge.contract import Contract
from hairseg_edge.errors import InputError
from hairseg_edge.inspect import (
    GpuIssue,
    analyzer_checks_gpu,
    gpu_compatibility,
    inspect_model,
    parse_analyzer_report,
)

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_float_model_report(tiny_tflite):
    info = inspect_model(tiny_tflite["float32"])
    assert info.size_bytes == tiny_tflite["float32"].stat().st_size
    [inp], [out] = info.inputs, info.outputs
    assert inp.shape == (1, 32, 32, 3) and inp.dtype == "float32" and not inp.quantized
    assert out.shape == (1, 32, 32, 1) and out.dtype == "float32"
    assert info.ops == {"CONV_2D": 2, "LOGISTIC": 1}
    assert info.op_count == 3 and info.subgraphs == 1
    # 3x3x3->4 conv and 1x1x4->1 conv at 32x32, counted by hand
    assert info.macs == 32 * 32 * 4 * 3 * 3 * 3 + 32 * 32 * 1 * 4
    assert info.parameters == 3 * 3 * 3 * 4 + 4 + 4 + 1
    assert info.adapter == "hairseg"
    assert "no hairseg contract" in info.adapter_reason
    assert info.contract is None and not info.mediapipe_metadata
    assert info.loads and info.backend.startswith("ai_edge_litert")
    assert info.gpu is not None and info.gpu.compatible and not info.gpu.issues


@pytest.mark.parametrize("kind,dtype,zero_point", [("uint8", "uint8", 0), ("int8", "int8", -128)])
def test_quantization_parameters_are_reported(tiny_tflite, kind, dtype, zero_point):
    info = inspect_model(tiny_tflite[kind])
    [inp], [out] = info.inputs, info.outputs
    assert inp.dtype == dtype and inp.scale == pytest.approx(1.0) and inp.zero_point == zero_point
    assert out.dtype == dtype and out.scale == pytest.approx(1 / 256)
    assert info.adapter == "hairseg"


def test_contract_and_mediapipe_metadata_are_shown(tiny_tflite, tmp_path):
    data = tflite_meta.embed_contract(tiny_tflite["uint8"].read_bytes(), Contract(input_size=32))
    data = tflite_meta.with_metadata(data, {tflite_meta.MEDIAPIPE_METADATA_NAME: b"\x00" * 24})
    stream = io.BytesIO(data)
    with zipfile.ZipFile(stream, "a") as archive:
        archive.writestr("labels.txt", "background\nhair\n")
    path = tmp_path / "packaged.tflite"
    path.write_bytes(stream.getvalue())
    info = inspect_model(path)
    assert info.contract == Contract(input_size=32).to_dict() and info.contract_error is None
    assert info.adapter == "hairseg" and "contract found" in info.adapter_reason
    assert info.mediapipe_metadata and info.associated_files == ("labels.txt",)
    assert set(info.metadata) >= {"hairseg_contract", "TFLITE_METADATA", "min_runtime_version"}


def test_a_wrong_contract_is_reported_not_fatal(tiny_tflite, tmp_path):
    path = tmp_path / "wrong.tflite"
    path.write_bytes(tflite_meta.embed_contract(tiny_tflite["float32"].read_bytes(),
                                                Contract(input_size=64)))
    info = inspect_model(path)
    assert info.adapter is None
    assert "input size 64" in info.contract_error


def test_non_hair_models_are_described_with_the_reason(tiny_tflite):
    info = inspect_model(tiny_tflite["classifier"])
    assert info.adapter is None and "expected 1 output" in info.adapter_reason
    assert [o.dtype for o in info.outputs] == ["float32", "int64"]
    assert info.loads  # a valid model, just not a hair model
    assert not info.gpu.compatible
    assert [(i.op, i.source) for i in info.gpu.issues][0] == ("ARG_MAX", "hairseg-edge rules")


def test_gpu_verdict_says_where_it_comes_from(tiny_tflite):
    info = inspect_model(tiny_tflite["float32"])
    assert info.gpu.analyzer_available  # ai_edge_litert ships the analyzer
    if analyzer_checks_gpu():
        assert "analyzer and hairseg-edge" in info.gpu.note
    else:  # LiteRT >= 2.19-era analyzers pass every model: the note must say so
        assert "no longer checks ops" in info.gpu.note and "77042" in info.gpu.note
        assert "compatible" in (info.gpu.analyzer_summary or "")


def test_analyzer_report_parsing():
    """The report format of analyzers that still check ops (TF 2.8-2.18)."""
    report = "\n".join([
        "Subgraph#0 main(T#0) -> [T#9]",
        "  Op#0 CONV_2D(T#0, T#5, T#2) -> [T#6]",
        "  Op#1 TFLite_Detection_PostProcess(T#6, T#1) -> [T#7]",
        "GPU COMPATIBILITY WARNING: Not supported custom op TFLite_Detection_PostProcess",
        "  Op#2 LOGISTIC(T#7) -> [T#9]",
        "",
        "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 "
        "with TFLite runtime version 2.8.2",
    ])
    assert parse_analyzer_report(report) == [
        GpuIssue(1, "TFLite_Detection_PostProcess",
                 "Not supported custom op TFLite_Detection_PostProcess", "LiteRT analyzer", 0)
    ]
    assert parse_analyzer_report("Your model looks compatible with GPU delegate") == []


def test_gpu_rules_catch_unsupported_ops_in_a_real_model(tiny_tflite):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tiny_tflite["classifier"].read_bytes()), 0)
    result = gpu_compatibility(tiny_tflite["classifier"], model)
    assert not result.compatible
    assert "ARG_MAX" in {i.op for i in result.issues}
    assert all(i.to_dict()["op_index"] >= 0 for i in result.issues)


def test_inspect_bad_files(tmp_path, tiny_tflite):
    text = tmp_path / "model.tflite"
    text.write_text("not a model")
    with pytest.raises(InputError, match="TFL3"):
        inspect_model(text)
    data = tiny_tflite["float32"].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated"):
        inspect_model(cut)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def test_info_command_tables(tiny_tflite):
    result = runner.invoke(app, ["info", str(tiny_tflite["uint8"])], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("CONV_2D", "QUANTIZE", "uint8", "scale 1, zero point 0", "GPU delegate",
                 "hairseg", "min_runtime_version", "MediaPipe metadata"):
        assert text in result.output, text


def test_info_command_json(tiny_tflite):
    result = runner.invoke(app, ["info", str(tiny_tflite["classifier"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["path"] == str(tiny_tflite["classifier"])
    assert report["ops"]["ARG_MAX"] == 1
    assert report["adapter"] is None
    assert report["gpu_delegate"]["compatible"] is False
    assert report["outputs"][1]["dtype"] == "int64"
    assert {"inputs", "outputs", "ops", "size_bytes", "metadata", "contract", "macs",
            "mediapipe_metadata", "loads"} <= set(report)


def test_info_command_without_gpu_check(tiny_tflite):
    result = runner.invoke(app, ["info", str(tiny_tflite["float32"]), "--json", "--no-gpu"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["gpu_delegate"] is None


def test_info_command_bad_inputs_exit_2_with_one_line(tmp_path, tiny_tflite):
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    data = tiny_tflite["float32"].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:100])
    for path in (text, cut, tmp_path / "missing.tflite"):
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"hairseg-edge: {path}: "), result.stderr
        assert "Traceback" not in result.output


def test_info_command_default_model():
    from hairseg_edge.models import bundled_model_path

    result = runner.invoke(app, ["info", "--json", "--no-gpu"])
    if bundled_model_path("int8").is_file():
        assert result.exit_code == 0
        assert json.loads(result.stdout)["path"].endswith("hairseg_int8.tflite")
    else:
        assert result.exit_code == 2
        assert "no model given and no bundled int8 model" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "hairseg_edge", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_info_as_a_real_process(tiny_tflite, tmp_path):
    proc = _cli("info", str(tiny_tflite["int8"]), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inputs"][0]["dtype"] == "int8"
    assert "XNNPACK" not in proc.stderr
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 10)
    proc = _cli("info", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"hairseg-edge: {bad}: not a TFLite model (no 'TFL3' file identifier)"


def test_info_without_litert_is_one_clear_line(tiny_tflite):
    """A device with only tflite_runtime (no ai-edge-litert schema) gets a one-line answer."""
    code = ("import sys\n"
            "for name in ('ai_edge_litert', 'ai_edge_litert.interpreter', "
            "'ai_edge_litert.schema_py_generated'):\n"
            "    sys.modules[name] = None\n"
            "from hairseg_edge.cli import main\n"
            f"sys.argv = ['hairseg-edge', 'info', {str(tiny_tflite['float32'])!r}]\n"
            "main()\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hairseg-edge: reading a model's structure needs ai-edge-litert's "
                                   "schema: pip install ai-edge-litert")
