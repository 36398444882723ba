"""``hairseg-edge eval`` and its library API (hairseg_edge.evaluate).

Models: the ``tiny_tflite`` fixture's converted models (hair = red pixels: probability
``sigmoid(10 R/255 - 5)``), and a deliberately bad copy of the float one with its last layer negated
(hair = NOT red). The ``red_hair`` data set is drawn so that the red model is right by construction,
so every score can be predicted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hairseg_edge.cli import app
from hairseg_edge.data import id_list_hash, iter_samples, open_dataset
from hairseg_edge.errors import CheckFailed, InputError
from hairseg_edge.evaluate import DEFAULT_MAX_DROP, evaluate, select_dataset
from hairseg_edge.imageio import write_image
from hairseg_edge.metrics import SegmentationMeter

REQUIRED_KEYS = {"iou", "mean_iou", "f1", "precision", "recall", "accuracy", "boundary_f", "n",
                 "p50_ms"}
REFERENCE_KEYS = {"reference_iou", "agreement_iou", "passed"}


# --------------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def negated_last_conv(model: Path, out: Path) -> Path:
    """A copy of ``model`` whose last CONV_2D has its weights and bias negated (a broken model)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model.read_bytes(), 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in tree.operatorCodes]
    graph = tree.subgraphs[0]
    convs = [op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D]
    for tensor_index in convs[-1].inputs[1:]:  # filter and bias
        buffer = tree.buffers[graph.tensors[tensor_index].buffer]
        values = np.frombuffer(bytes(bytearray(buffer.data)), np.float32)
        buffer.data = np.frombuffer((-values).tobytes(), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


@pytest.fixture(scope="module")
def bad_model(tiny_tflite, tmp_path_factory) -> Path:
    return negated_last_conv(tiny_tflite["float32"], tmp_path_factory.mktemp("bad") / "bad.tflite")


def make_red_hair_dataset(root: Path, n: int = 8, seed: int = 0) -> Path:
    """Folder-format data set where hair is exactly the red blobs (R > 200) on low-red backgrounds,
    in several sizes and aspect ratios; one image has no hair at all."""
    rng = np.random.default_rng(seed)
    sizes = [(48, 64), (64, 48), (40, 40), (56, 80)]
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = rng.integers(0, 60, (h, w))
        img[..., 1] = rng.integers(60, 200, (h, w))
        img[..., 2] = rng.integers(60, 200, (h, w))
        mask = np.zeros((h, w), np.uint8)
        if i != n - 1:  # the last one is hairless
            yy, xx = np.mgrid[:h, :w]
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            ry, rx = rng.uniform(0.2, 0.35) * h, rng.uniform(0.2, 0.35) * w
            mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8)
        img[mask > 0] = np.stack([rng.integers(215, 256, mask.sum()),
                                  rng.integers(0, 50, mask.sum()),
                                  rng.integers(0, 50, mask.sum())], axis=1)
        write_image(root / "images" / f"img{i:02d}.png", img)
        write_image(root / "masks" / f"img{i:02d}.png", mask * 255)
    return root


@pytest.fixture
def red_hair(tmp_path) -> Path:
    return make_red_hair_dataset(tmp_path / "red_hair")


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


def test_eval_prints_a_table_and_writes_the_json_keys(tiny_tflite, red_hair, tmp_path):
    out = tmp_path / "scores.json"
    result = invoke(tiny_tflite["float32"], "--data", red_hair, "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "IoU (global)" in result.stdout and "boundary F" in result.stdout
    report = json.loads(out.read_text())
    assert REQUIRED_KEYS <= set(report) and not REFERENCE_KEYS & set(report)
    assert report["n"] == 8 and report["adapter"] == "hairseg"
    for key in REQUIRED_KEYS - {"n", "p50_ms"}:
        assert 0.0 <= report[key] <= 1.0, key
    assert report["p50_ms"] > 0
    # The red model is right by construction, up to the letterbox/resize at the blob edges.
    assert report["iou"] > 0.9 and report["accuracy"] > 0.97


def test_eval_flip_tta_is_recorded_and_scores_a_mirror_equivariant_model_alike(tiny_tflite, red_hair,
                                                                             tmp_path):
    plain, tta = tmp_path / "plain.json", tmp_path / "tta.json"
    assert invoke(tiny_tflite["uint8"], "--data", red_hair, "--json", plain).exit_code == 0
    result = invoke(tiny_tflite["uint8"], "--data", red_hair, "--json", tta, "--flip-tta")
    assert result.exit_code == 0, result.stderr
    a, b = json.loads(plain.read_text()), json.loads(tta.read_text())
    assert (a["flip_tta"], b["flip_tta"]) == (False, True)
    assert b["iou"] == a["iou"] and b["n"] == a["n"]  # the tiny model is per pixel: mirroring is exact


def test_evaluate_matches_segment_and_the_meter_image_by_image(tiny_tflite, red_hair):
    from hairseg_edge.runtime import Segmenter

    ds = open_dataset(red_hair)
    meter = SegmentationMeter()
    with Segmenter(tiny_tflite["float32"]) as seg:
        for _, rgb, target in iter_samples(ds):
            meter.update(seg.segment(rgb).mask, target)
        result = evaluate(seg, ds)
        assert seg.segment(np.zeros((8, 8, 3), np.uint8)).mask.shape == (8, 8)  # still open
    assert result.metrics == meter.result()
    assert result.reference is None and result.agreement is None and result.passed is None
    result.check()  # nothing to check without a reference


def test_the_celebamask_layout_and_hairless_images(tiny_tflite, synthetic_celeba_dataset, tmp_path):
    out = tmp_path / "celeba.json"
    result = invoke(tiny_tflite["uint8"], "--data", synthetic_celeba_dataset, "--json", out,
                    "--threads", "2")
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 10 and report["layout"] == "celebamask-hq"


# --------------------------------------------------------------------------------------------------
# Choosing images: --split, --ids, --limit
# --------------------------------------------------------------------------------------------------


def test_split_ids_and_limit_select_the_images(tiny_tflite, synthetic_folder_dataset, tmp_path):
    ds = open_dataset(synthetic_folder_dataset)
    train, val = ds.split()
    model = tiny_tflite["float32"]
    counts = {}
    for split in ("all", "train", "val"):
        if split == "val" and len(val) == 0:
            continue
        out = tmp_path / f"{split}.json"
        result = invoke(model, "--data", synthetic_folder_dataset, "--split", split, "--json", out)
        assert result.exit_code == 0, result.stderr
        counts[split] = json.loads(out.read_text())["n"]
    assert counts["all"] == len(ds) == 12 and counts["train"] == len(train)

    chosen = [ds.ids[1], ds.ids[4], ds.ids[7]]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# my validation ids\n" + "\n".join(chosen) + "\n")
    out = tmp_path / "ids.json"
    assert invoke(model, "--data", synthetic_folder_dataset, "--ids", ids_file, "--json", out).exit_code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3 and report["ids_hash"] == id_list_hash(chosen)

    out = tmp_path / "limit.json"
    assert invoke(model, "--data", synthetic_folder_dataset, "--limit", "5", "--json", out).exit_code == 0
    assert json.loads(out.read_text())["n"] == 5


def test_select_dataset_defaults_to_every_image(synthetic_folder_dataset):
    assert len(select_dataset(synthetic_folder_dataset)) == 12
    with pytest.raises(InputError, match="--split"):
        select_dataset(synthetic_folder_dataset, split="test")


# --------------------------------------------------------------------------------------------------
# --reference: agreement and the regression gate
# --------------------------------------------------------------------------------------------------


def test_a_model_against_itself_agrees_perfectly_and_passes(tiny_tflite, red_hair, tmp_path):
    out = tmp_path / "self.json"
    model = tiny_tflite["float32"]
    result = invoke(model, "--data", red_hair, "--reference", model, "--json", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert REQUIRED_KEYS | REFERENCE_KEYS <= set(report)
    assert report["passed"] is True and report["agreement_iou"] == 1.0
    assert report["reference_iou"] == report["iou"] and report["max_prob_diff"] == 0.0
    assert report["max_drop"] == DEFAULT_MAX_DROP


def test_int8_against_its_float_original(tiny_tflite, red_hair):
    result = evaluate(tiny_tflite["uint8"], red_hair, reference=tiny_tflite["float32"], max_drop=0.02)
    assert result.agreement is not None and result.reference is not None
    assert result.agreement.iou > 0.97
    assert 0 < result.agreement.max_prob_diff < 0.1  # quantisation moves probabilities a little
    assert result.passed is True
    assert result.to_dict()["reference"]["model"] == str(tiny_tflite["float32"])


def test_a_bad_candidate_fails_the_gate_with_exit_1(tiny_tflite, bad_model, red_hair, tmp_path,
                                                    one_line_error):
    out = tmp_path / "bad.json"
    result = invoke(bad_model, "--data", red_hair, "--reference", tiny_tflite["float32"],
                    "--json", out)
    line = one_line_error(result, "below the reference", code=1)
    assert "allowed drop 0.0050" in line
    report = json.loads(out.read_text())  # the scores are still written, for the CI log
    assert report["passed"] is False and report["iou"] < 0.1 and report["reference_iou"] > 0.9
    assert report["agreement_iou"] < 0.1

    with pytest.raises(CheckFailed):
        evaluate(bad_model, red_hair, reference=tiny_tflite["float32"]).check()
    # A drop within --max-drop passes.
    lenient = invoke(bad_model, "--data", red_hair, "--reference", tiny_tflite["float32"],
                     "--max-drop", "1.0")
    assert lenient.exit_code == 0, lenient.stderr


def test_the_gate_boundary_is_inclusive(tiny_tflite, bad_model, red_hair):
    result = evaluate(bad_model, red_hair, reference=tiny_tflite["float32"])
    drop = result.iou_drop
    assert drop is not None and drop > 0.5
    exactly = evaluate(bad_model, red_hair, reference=tiny_tflite["float32"], max_drop=drop)
    assert exactly.passed is True


# --------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no traceback
# --------------------------------------------------------------------------------------------------


def test_missing_and_malformed_data_folders(tiny_tflite, tmp_path, one_line_error):
    model = tiny_tflite["float32"]
    one_line_error(invoke(model, "--data", tmp_path / "nope"), "nope", "no such folder")
    (tmp_path / "junk").mkdir()
    one_line_error(invoke(model, "--data", tmp_path / "junk"), "not a data set")


def test_a_missing_or_broken_model(red_hair, tmp_path, one_line_error):
    one_line_error(invoke(tmp_path / "nope.tflite", "--data", red_hair), "nope.tflite")
    fake = tmp_path / "fake.tflite"
    fake.write_text("not a model")
    one_line_error(invoke(fake, "--data", red_hair), "fake.tflite")


def test_a_model_that_is_not_a_hair_model(tiny_tflite, red_hair, one_line_error):
    one_line_error(invoke(tiny_tflite["classifier"], "--data", red_hair), "tiny_classifier")


def test_no_model_and_no_bundled_model(red_hair, monkeypatch, tmp_path, one_line_error):
    import hairseg_edge.models as models

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)  # an install without the bundled model
    one_line_error(invoke("--data", red_hair), "no bundled int8 model")


def test_an_unreadable_image_in_the_data_set(tiny_tflite, red_hair, one_line_error):
    (red_hair / "images" / "img03.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage IEND")
    one_line_error(invoke(tiny_tflite["float32"], "--data", red_hair), "img03.png")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--split", "test"], "--split"),
    (["--limit", "0"], "--limit"),
    (["--max-drop", "-0.1"], "--max-drop"),
    (["--threads", "0"], "threads"),
])
def test_bad_option_values(tiny_tflite, red_hair, args, fragment, one_line_error):
    one_line_error(invoke(tiny_tflite["float32"], "--data", red_hair, *args), fragment)


def test_ids_that_are_not_in_the_data_set(tiny_tflite, red_hair, tmp_path, one_line_error):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("img01\nnot_there\n")
    one_line_error(invoke(tiny_tflite["float32"], "--data", red_hair, "--ids", ids_file),
                          "not in the data set", "not_there")


def test_an_existing_json_file_needs_force(tiny_tflite, red_hair, tmp_path, one_line_error):
    out = tmp_path / "scores.json"
    out.write_text("keep")
    one_line_error(invoke(tiny_tflite["float32"], "--data", red_hair, "--json", out),
                          "already exists")
    assert out.read_text() == "keep"
    assert invoke(tiny_tflite["float32"], "--data", red_hair, "--json", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["n"] == 8


# --------------------------------------------------------------------------------------------------
# Peer models: by --adapter and by detection
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file_name", "adapter"), [
    ("hair_segmentation_mobile.tflite", "community-mobile"),
    ("hair_segmenter.tflite", "mediapipe-hair"),
    ("bisenetv2_celebamaskhq_256x256_integer_quant.tflite", "bisenetv2-celebamask"),
])
def test_peer_models_by_adapter_and_by_detection(peers_dir, tmp_path, file_name, adapter):
    from hairseg_edge.synth import make_dataset

    data = make_dataset(tmp_path / "synth", n=3, size=[(64, 64), (48, 80)], seed=21)
    model = peers_dir / file_name
    reports = []
    for extra in (["--adapter", adapter], []):
        out = tmp_path / f"peer{len(extra)}.json"
        result = invoke(model, "--data", data, "--json", out, *extra)
        assert result.exit_code == 0, result.stderr
        reports.append(json.loads(out.read_text()))
    by_name, detected = reports
    assert by_name["adapter"] == detected["adapter"] == adapter
    assert by_name["n"] == 3 and by_name["iou"] == detected["iou"]


def test_a_peer_as_the_reference_with_its_adapter(peers_dir, tiny_tflite, red_hair, tmp_path):
    out = tmp_path / "vs_peer.json"
    result = invoke(tiny_tflite["float32"], "--data", red_hair, "--json", out,
                    "--reference", peers_dir / "hair_segmentation_mobile.tflite",
                    "--reference-adapter", "community-mobile", "--max-drop", "1")
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["adapter"] == "hairseg" and report["reference"]["adapter"] == "community-mobile"
    assert report["passed"] is True and 0.0 <= report["agreement_iou"] <= 1.0


# --------------------------------------------------------------------------------------------------
# Which split: the bundled model on a data set it trained on (issue 27)
# --------------------------------------------------------------------------------------------------


def test_auto_split_scores_the_validation_split_when_the_bundled_model_trained_on_the_set(tmp_path):
    from hairseg_edge.evaluate import bundled_training_sets, choose_split
    from hairseg_edge.models import bundled_model_path

    trained = bundled_training_sets()
    assert "figaro1k-hair-train" in trained and "celebamask-hq-hair" in trained
    bundled = bundled_model_path("int8")
    data = tmp_path / "figaro1k-hair-train"
    assert choose_split("auto", bundled, data).split == "val"
    assert choose_split("auto", bundled, tmp_path / "my-photos").split == "all"
    assert choose_split("auto", tmp_path / "mine.tflite", data).split == "all"  # not the bundled model
    explicit = choose_split("all", bundled, data)
    assert explicit.split == "all" and explicit.warning and "inflates" in explicit.warning
    assert choose_split("val", bundled, data).warning is None
    assert choose_split("auto", bundled, data, ids_given=True).split == "all"  # the ids chosen say it all
    with pytest.raises(InputError, match="--split"):
        choose_split("test", bundled, data)


def test_eval_header_names_the_split_and_the_photo_count(tiny_tflite, synthetic_folder_dataset, tmp_path):
    result = invoke(tiny_tflite["float32"], "--data", synthetic_folder_dataset, "--split", "val")
    assert result.exit_code == 0, result.stderr
    n = len(open_dataset(synthetic_folder_dataset).split()[1])
    assert f"eval: validation split, {n} photos of" in result.stdout


def test_eval_of_the_bundled_model_on_a_training_set_defaults_to_its_validation_split(
        synthetic_folder_dataset, tmp_path):
    """A copy of a data set named like one the bundled model trained on: auto picks the val split,
    and --split all still runs but warns on stderr."""
    import shutil

    data = tmp_path / "figaro1k-hair-train"
    shutil.copytree(synthetic_folder_dataset, data)
    n_val = len(open_dataset(data).split()[1])
    result = invoke("--data", data)
    assert result.exit_code == 0, result.stderr
    assert f"eval: validation split: the bundled model trained on the rest of figaro1k-hair-train, " \
           f"{n_val} photos" in result.stdout
    assert "WARNING" not in result.stderr
    result = invoke("--data", data, "--split", "all")
    assert result.exit_code == 0, result.stderr
    assert "WARNING: the bundled model trained on figaro1k-hair-train" in result.stderr
    assert f"all photos, {len(open_dataset(data))} photos" in result.stdout
