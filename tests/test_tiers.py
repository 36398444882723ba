"""Bundled model tiers: ``--model default|fast|large|PATH`` in every command, and ``bench --pick``.

The pick tests build a real second tier in a temporary models folder (a copy of the bundled int8 model
under the large tier's file name, with its own card) and time both tiers for real: no timing is faked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hairseg_edge.models as models
from hairseg_edge.cli import app
from hairseg_edge.errors import InputError

runner = CliRunner()
BUNDLED_INT8 = models.bundled_model_path("int8")
needs_bundled = pytest.mark.skipif(not BUNDLED_INT8.is_file(), reason="no bundled int8 model in this checkout")


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def two_tiers(tmp_path, monkeypatch) -> Path:
    """A models folder with the default tier and a 'large' tier (the same network, another file and a
    card claiming higher IoU on every split), patched in as the package's models folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(BUNDLED_INT8, folder / "hairseg_int8.tflite")
    shutil.copy(BUNDLED_INT8, folder / "hairseg_large_int8.tflite")
    card = json.loads((models.MODELS_DIR / "model_card.json").read_text())
    (folder / "model_card.json").write_text(json.dumps(card))
    for rows in card["metrics"].values():
        rows["hairseg int8"]["iou"] += 0.02
    (folder / "model_card_large.json").write_text(json.dumps(card))
    monkeypatch.setattr(models, "MODELS_DIR", folder)
    return folder


# --- the resolver ---------------------------------------------------------------------------------------
def test_tier_names_resolve_and_paths_pass_through(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    (tmp_path / "hairseg_int8.tflite").write_bytes(b"x")
    (tmp_path / "hairseg_float.keras").write_bytes(b"x")
    assert models.resolve_model(None) == tmp_path / "hairseg_int8.tflite"
    assert models.resolve_model("default") == models.resolve_model("fast") == tmp_path / "hairseg_int8.tflite"
    assert models.resolve_model("fast", "float") == tmp_path / "hairseg_float.keras"
    # Anything that is not a tier name is a path, as given; a Path object is always a path.
    assert models.resolve_model("elsewhere/m.tflite") == Path("elsewhere/m.tflite")
    assert models.resolve_model("./large") == Path("large")
    assert models.resolve_model(Path("large")) == Path("large")
    assert [t.name for t in models.bundled_tiers()] == ["default"]
    with pytest.raises(InputError, match=r"'large' is not bundled in this install \(hairseg_large_int8"
                                         r"\.tflite is missing\); bundled: default \(fast\)"):
        models.resolve_model("large")
    (tmp_path / "hairseg_large_int8.tflite").write_bytes(b"x")
    assert [t.name for t in models.bundled_tiers()] == ["default", "large"]
    assert models.resolve_model("large") == tmp_path / "hairseg_large_int8.tflite"
    with pytest.raises(InputError, match="hairseg_large_float.keras is missing"):
        models.resolve_model("large", "float")


def test_card_iou_reads_the_validation_splits_of_the_card():
    iou = models.card_iou(models.TIERS["default"])
    assert set(iou) == {"celebamask-hq-hair", "figaro1k-hair-train", "lfw-parts-hair-train", "mean"}
    assert iou["mean"] == pytest.approx(sum(v for k, v in iou.items() if k != "mean") / 3)
    assert 0.5 < iou["celebamask-hq-hair"] < 1


# --- every command takes --model TIER, and a tier not bundled is one line, exit 2 -------------------------
@pytest.mark.parametrize("args", [
    ["info", "--model", "large"],
    ["info", "large"],
    ["bench", "--model", "large"],
    ["bench", "large"],
    ["eval", "--model", "large", "--data", "{data}"],
    ["run", "{image}", "--model", "large", "--out", "{out}"],
    ["export", "--model", "large", "--out", "{out}"],
])
def test_a_tier_not_in_this_install_is_one_line_exit_2(args, synthetic_folder_dataset, tmp_path, monkeypatch):
    """An install with only the default tier (the large files are left out of the models folder)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in (*models.TIERS["default"].files.values(), "model_card.json"):
        shutil.copy(models.MODELS_DIR / name, folder / name)
    monkeypatch.setattr(models, "MODELS_DIR", folder)
    image = next((synthetic_folder_dataset / "images").iterdir())
    args = [a.format(data=synthetic_folder_dataset, image=image, out=tmp_path / "out") for a in args]
    result = runner.invoke(app, args)
    _one_line_exit_2(result, "'large' is not bundled in this install", "bundled: default (fast)")
    assert not (tmp_path / "out").exists()


def test_model_given_twice_is_one_line_exit_2():
    _one_line_exit_2(runner.invoke(app, ["info", "fast", "--model", "large"]), "give the model once")


@needs_bundled
def test_fast_names_the_bundled_model_in_info_and_eval(synthetic_folder_dataset, tmp_path):
    result = runner.invoke(app, ["info", "--model", "fast", "--json", "--no-gpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(BUNDLED_INT8)
    out = tmp_path / "scores.json"
    result = runner.invoke(app, ["eval", "-m", "default", "--data", str(synthetic_folder_dataset), "--json",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["model"] == str(BUNDLED_INT8)


@needs_bundled
def test_info_names_the_tier_its_card_scores_and_the_other_tiers(two_tiers):
    result = runner.invoke(app, ["info", "large", "--json", "--no-gpu"])
    assert result.exit_code == 0, result.output
    tier = json.loads(result.stdout)["tier"]
    card = json.loads((two_tiers / "model_card_large.json").read_text())
    assert tier["name"] == "large" and tier["other_tiers"] == ["default"]
    assert tier["card_iou"]["figaro1k-hair-train"] == card["metrics"]["figaro1k-hair-train"]["hairseg int8"]["iou"]
    result = runner.invoke(app, ["info", "fast", "--no-gpu"], env={"COLUMNS": "200"})
    assert "bundled tier" in result.stdout and "default (alias fast), --model default" in result.stdout
    assert "other tiers here: large" in result.stdout
    outside = two_tiers.parent / "copy.tflite"
    shutil.copy(two_tiers / "hairseg_int8.tflite", outside)
    assert json.loads(runner.invoke(app, ["info", str(outside), "--json", "--no-gpu"]).stdout)["tier"] is None


@needs_bundled
def test_run_and_info_take_the_large_tier_when_it_is_bundled(two_tiers, synthetic_folder_dataset, tmp_path):
    result = runner.invoke(app, ["info", "large", "--json", "--no-gpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(two_tiers / "hairseg_large_int8.tflite")
    image = next((synthetic_folder_dataset / "images").iterdir())
    summary = tmp_path / "run.json"
    result = runner.invoke(app, ["run", str(image), "--model", "large", "--out", str(tmp_path / "out"),
                                 "--json", str(summary)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / f"{image.stem}_mask.png").is_file()
    assert "hairseg_large_int8.tflite" in summary.read_text()


# --- bench --pick -------------------------------------------------------------------------------------------
@needs_bundled
def test_pick_chooses_the_most_accurate_tier_within_the_budget(two_tiers, tmp_path):
    out = tmp_path / "pick.json"
    result = runner.invoke(app, ["bench", "--pick", "--budget-ms", "10000", "--runs", "3", "--warmup", "0",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    pick = json.loads(out.read_text())
    assert [t["tier"] for t in pick["tiers"]] == ["default", "large"]
    assert all(t["fits"] and t["p50_ms"] > 0 for t in pick["tiers"])
    assert pick["chosen"]["tier"] == "large"  # the card's higher IoU wins when both fit
    assert pick["chosen"]["card_iou"]["mean"] == pytest.approx(
        pick["tiers"][0]["card_iou"]["mean"] + 0.02)
    assert pick["bench_options"]["end_to_end"] is True
    assert "picked: large" in result.stdout


@needs_bundled
def test_pick_keeps_the_fast_tier_when_its_card_is_better(two_tiers, tmp_path):
    card = json.loads((two_tiers / "model_card_large.json").read_text())
    for rows in card["metrics"].values():
        rows["hairseg int8"]["iou"] -= 0.05
    (two_tiers / "model_card_large.json").write_text(json.dumps(card))
    out = tmp_path / "pick.json"
    result = runner.invoke(app, ["bench", "--pick", "--budget-ms", "10000", "--runs", "3", "--warmup", "0",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["chosen"]["tier"] == "default"


@needs_bundled
def test_pick_without_a_tier_card_is_one_line_exit_2(two_tiers):
    (two_tiers / "model_card_large.json").unlink()
    _one_line_exit_2(runner.invoke(app, ["bench", "--pick", "--budget-ms", "5"]),
                     "model_card_large.json: the large tier has no model card")


@needs_bundled
def test_pick_exits_1_when_no_tier_fits_and_still_writes_the_json(two_tiers, tmp_path):
    out = tmp_path / "pick.json"
    result = runner.invoke(app, ["bench", "--pick", "--budget-ms", "0.001", "--runs", "3", "--warmup", "0",
                                 "--json", str(out)])
    assert result.exit_code == 1, result.output
    assert "no bundled tier fits 0.001 ms" in result.stderr
    pick = json.loads(out.read_text())
    assert pick["chosen"] is None and not any(t["fits"] for t in pick["tiers"])


@pytest.mark.parametrize("args, message", [
    (["bench", "--pick"], "--pick needs --budget-ms"),
    (["bench", "--pick", "--budget-ms", "0"], "--budget-ms must be between 0.001 and 60000"),
    (["bench", "--pick", "--budget-ms", "5", "fast"], "give no MODEL"),
    (["bench", "--budget-ms", "5"], "--budget-ms goes with --pick"),
    (["bench", "--pick", "--budget-ms", "5", "--threads", "1,2"], "one thread count"),
])
def test_bad_pick_usage_is_one_line_exit_2(args, message):
    _one_line_exit_2(runner.invoke(app, args), message)


def test_train_and_average_name_a_tier_s_float_model(tmp_path):
    """--init-from / --teacher / average take a tier name through the same resolver."""
    from hairseg_edge.cli.train import bundled_or_path

    assert bundled_or_path(None) is None and bundled_or_path("runs/x/model.keras") == "runs/x/model.keras"
    if models.bundled_model_path("float").is_file():
        assert bundled_or_path("fast") == bundled_or_path("default") == str(models.bundled_model_path("float"))
    if models.bundled_model_path("float", "large").is_file():
        assert bundled_or_path("large") == str(models.bundled_model_path("float", "large"))
    else:
        _one_line_exit_2(runner.invoke(app, ["average", "default", "large", "--out", str(tmp_path / "soup")]),
                         "'large' is not bundled in this install")


@needs_bundled
def test_eval_of_the_large_tier_on_a_training_set_scores_its_validation_split(two_tiers):
    """The bundled tiers trained on the card's data sets: --split auto guards the large tier too."""
    from hairseg_edge.evaluate import choose_split

    assert choose_split("auto", models.resolve_model("large"), "x/figaro1k-hair-train").split == "val"
    assert choose_split("auto", models.resolve_model("fast"), "x/figaro1k-hair-train").split == "val"
