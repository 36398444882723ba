"""Tests of the benchmark scripts (arch_study, sweep, train_cost, ship_default_model, scale_robustness, cut_frames,
resample_cost, threshold, label_noise, loss_targets).

The fast tests check the scripts' own logic (Pareto front, option parsing, the fixed validation id
list, the cache location). The slow ones run each script end to end at toy scale on a synthetic data
set (tiny inputs, a few training steps, real training/export/eval/bench child processes) and check the
results files and that a rerun reuses the cached stages.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def common():
    return _load("_common")


@pytest.fixture(scope="module")
def arch_study():
    return _load("arch_study")


@pytest.fixture(scope="module")
def sweep():
    return _load("sweep")


# --- fast: logic -----------------------------------------------------------------------------------------
def test_pareto_front_keeps_only_undominated_points_in_latency_order(common):
    points = [(5.0, 0.80), (1.0, 0.60), (2.0, 0.85), (3.0, 0.85), (10.0, 0.90), (4.0, None), (2.0, 0.70)]
    # (5, .80) is beaten by (2, .85); (3, .85) ties on IoU but is slower; (2, .70) is beaten by (2, .85).
    assert common.pareto_front(points) == [1, 2, 4]


def test_pareto_front_of_identical_points_keeps_both_and_ignores_nan(common):
    assert common.pareto_front([(1.0, 0.5), (1.0, 0.5), (float("nan"), 0.9)]) == [0, 1]
    assert common.pareto_front([]) == []


def test_markdown_table_escapes_pipes_and_blanks_none(common):
    text = common.markdown_table(["a", "b"], [["x|y", None]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y |  |"]
    assert common.fmt(float("nan")) == "" and common.fmt(0.12345, ".2f") == "0.12"


def test_cache_must_be_outside_the_repository(common, monkeypatch, tmp_path):
    from hairseg_edge.errors import InputError

    monkeypatch.setenv("HAIRSEG_BENCH_CACHE", str(REPO / "bench-cache"))
    with pytest.raises(InputError, match="outside the repository"):
        common.cache_dir()
    monkeypatch.setenv("HAIRSEG_BENCH_CACHE", str(tmp_path / "c"))
    assert common.cache_dir() == (tmp_path / "c").resolve()


def test_validation_ids_are_the_hash_split_and_stay_fixed(common, synthetic_folder_dataset, tmp_path):
    from hairseg_edge.data import open_dataset
    from hairseg_edge.errors import InputError

    out = tmp_path / "val.txt"
    ids = common.validation_ids(synthetic_folder_dataset, out)
    assert ids == open_dataset(synthetic_folder_dataset).split()[1].ids
    assert out.read_text().startswith("# validation ids of")
    # An existing list is the study's fixed split: kept as it is, not recomputed.
    out.write_text("# fixed\n" + "\n".join(open_dataset(synthetic_folder_dataset).ids[:2]) + "\n")
    assert common.validation_ids(synthetic_folder_dataset, out) == open_dataset(synthetic_folder_dataset).ids[:2]
    out.write_text("no-such-id\n")
    with pytest.raises(InputError, match="not in the data set"):
        common.validation_ids(synthetic_folder_dataset, out)


def test_committed_validation_list_matches_the_hash_split_when_data_is_present(common):
    listed = BENCH / "splits" / "celebamask-hq-hair_val.txt"
    data = common.DEFAULT_CELEBA
    if not data.is_dir():
        pytest.skip(f"CelebAMask-HQ hair data not found at {data}")
    from hairseg_edge.data import open_dataset, read_id_list

    assert read_id_list(listed) == open_dataset(data).split()[1].ids


def test_arch_study_plan_parsing_and_errors(arch_study):
    from hairseg_edge.errors import InputError

    args = arch_study.parse_args(["--plan", "unet=0.125:3", "--archs", "unet,mobile_unet"])
    assert args.plans["unet"] == arch_study.ArchPlan(0.125, 3)
    assert args.plans["mobile_unet"] == arch_study.ARCH_PLANS["mobile_unet"]
    assert args.archs == ["unet", "mobile_unet"]
    for bad in (["--plan", "unet=wide:3"], ["--plan", "resnet=0.5:3"], ["--plan", "unet=0.5:0"],
                ["--archs", "resnet"]):
        with pytest.raises(InputError):
            arch_study.parse_args(bad)


@pytest.mark.train
def test_arch_study_covers_every_registry_architecture(arch_study):
    # Asked in a child process: this test process never imports TensorFlow.
    proc = subprocess.run([sys.executable, "-c", "from hairseg_edge.training.archs import arch_names; "
                           "print(','.join(arch_names()))"], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(proc.stdout.strip().splitlines()[-1].split(",")) == sorted(arch_study.ARCH_PLANS)


def test_arch_study_refuses_existing_results_without_force(arch_study, tmp_path, capsys):
    (tmp_path / "arch_study.json").write_text("{}")
    assert arch_study.main(["--results", str(tmp_path), "--archs", "mobile_unet"]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_sweep_points_and_errors(sweep):
    from hairseg_edge.errors import InputError

    args = sweep.parse_args(["--points", "128x0.35,192x0.75"])
    assert args.grid == [(128, 0.35), (192, 0.75)]
    assert len(sweep.parse_args(["--sizes", "128,160", "--widths", "0.5,1"]).grid) == 4
    for bad in (["--points", "100x0.5"], ["--points", "128"], ["--extra", "x=/no/such.keras"],
                ["--data", "a", "--data", "b", "--data-weights", "1,2,3"]):
        with pytest.raises(InputError):
            sweep.parse_args(bad)


# --- slow: the scripts end to end at toy scale -----------------------------------------------------------
def _run(script: str, args: list[str], cache: Path, timeout: int = 1500) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "HAIRSEG_BENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.fixture
def toy_data(tmp_path: Path) -> Path:
    from hairseg_edge.synth import make_dataset

    return make_dataset(tmp_path / "toy", n=48, size=64, seed=3)


@pytest.mark.slow
@pytest.mark.train
def test_arch_study_end_to_end_at_toy_scale_then_from_cache(toy_data, tmp_path, peers_dir):
    results = tmp_path / "results"
    args = ["--data", str(toy_data), "--archs", "mobile_unet", "--img-size", "64", "--plan", "mobile_unet=0.35:1",
            "--steps-per-epoch", "2", "--batch", "4", "--export-limit", "48", "--finetune-steps", "2",
            "--bench-runs", "3", "--ids", str(tmp_path / "val.txt"), "--results", str(results)]
    first = _run("arch_study.py", args, tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-3000:]
    study = json.loads((results / "arch_study.json").read_text())
    ours = {r["variant"]: r for r in study["rows"] if r["kind"] == "ours"}
    assert sorted(ours) == sorted(["float32", "int8", "int8-qat", "pruned50-int8"])
    peers = {r["name"] for r in study["rows"] if r["kind"] == "peer"}
    assert peers == {"mediapipe-hair", "bisenetv2-celebamask", "community-mobile"}
    for r in study["rows"]:
        assert 0.0 <= r["iou"] <= 1.0 and r["p50_ms_1t"] > 0 and r["p50_ms_2t"] > 0 and r["size_bytes"] > 0
        assert r["gzip_bytes"] < r["size_bytes"] * 1.01
    assert ours["int8"]["size_bytes"] < 0.6 * ours["float32"]["size_bytes"]
    assert ours["pruned50-int8"]["sparsity"] == pytest.approx(0.5, abs=0.05)
    assert any(r["pareto"] for r in study["rows"])
    assert study["training"]["mobile_unet"]["epochs"] == 1 and study["complete"]
    md = (results / "arch_study.md").read_text()
    assert "| mobile_unet/pruned50-int8 |" in md and "community-mobile" in md and "CPU:" in md
    assert (results / "arch_study.png").read_bytes()[:4] == b"\x89PNG"
    # Rerun: every stage comes from the cache (no new training, export, eval or bench).
    started = time.monotonic()
    again = _run("arch_study.py", [*args, "--force"], tmp_path / "cache")
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert json.loads((results / "arch_study.json").read_text())["rows"][0]["iou"] == study["rows"][0]["iou"]


@pytest.mark.slow
@pytest.mark.train
def test_sweep_end_to_end_at_toy_scale(toy_data, tmp_path):
    from hairseg_edge.synth import make_dataset

    wild = make_dataset(tmp_path / "wild", n=30, size=[(64, 64), (48, 80)], seed=4)
    results = tmp_path / "results"
    proc = _run("sweep.py", ["--data", str(toy_data), "--data", str(wild), "--data-weights", "1,2",
                             "--points", "64x0.35", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "4",
                             "--export-limit", "48", "--bench-runs", "3", "--no-peers",
                             "--ids", str(tmp_path / "val.txt"), "--results", str(results)], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((results / "sweep.json").read_text())
    (point,) = data["points"]
    assert point["img_size"] == 64 and set(point["iou"]) == {"toy", "wild"}
    assert point["p50_ms_1t"] > 0 and point["training"]["data_weights"] == [1, 2]
    assert (results / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.train
def test_train_cost_at_toy_scale(tmp_path):
    from hairseg_edge.synth import make_dataset

    data = make_dataset(tmp_path / "toy", n=60, size=64, seed=5)
    results = tmp_path / "results"
    proc = _run("train_cost.py", ["--data", str(data), "--sizes", "20,all", "--img-size", "64", "--batch", "4",
                                  "--pipeline-batches", "4", "--train-steps", "2", "--results", str(results)],
                tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((results / "train_cost.json").read_text())
    assert {(r["mode"], r["dataset_images"]) for r in study["rows"]} == {
        ("pipeline", 20), ("pipeline", 60), ("epoch", 20), ("epoch", 60)}
    assert all(r["images_per_s"] > 0 and r["peak_rss_mb"] > 100 for r in study["rows"])
    assert set(study["comparison"]) == {"pipeline", "epoch"}
    assert study["arch"] == "fused_unet"  # the bundled model's architecture by default
    assert "Memory vs data-set size" in (results / "train_cost.md").read_text()


def test_ship_card_states_the_small_head_iou_it_measured():
    ship = _load("ship_default_model")
    text = ship._small_heads_text({"small_head_iou": {"0.4": 0.4942, "0.6": 0.6994}})
    assert "shrunk to 0.6x and 0.4x of the frame, int8 IoU falls to 0.70 and 0.49" in text.replace("\n  ", " ")
    assert text.startswith("- Small heads") and all(len(line) <= 106 for line in text.splitlines())
    assert "IoU" not in ship._small_heads_text({})  # an older card: no figures rather than stale ones


def test_ship_table_has_a_flip_tta_row_without_a_model_only_time():
    """The --flip-tta row is the int8 file run twice per frame: whole-frame times only, no file size."""
    ship = _load("ship_default_model")
    scores = {"iou": 0.9, "f1": 0.95}
    card = {"date": "2026-11-26", "machine": {"cpu": "cpu", "cores": 2, "versions": {"python": "3.11"}},
            "metrics": {"set": {"hairseg int8": scores, "hairseg int8 --flip-tta": scores}},
            "timing_ms": {"hairseg int8": {"p50_ms": 1.5, "rgb_to_mask_ms": 2.0, "end_to_end_p50_ms": 3.0,
                                           "size_bytes": 250 * 1024},
                          "hairseg int8 --flip-tta": {"rgb_to_mask_ms": 4.0, "end_to_end_p50_ms": 5.0}}}
    table = ship.render_table(card)
    assert "| hairseg int8 | 0.9000 / 0.9500 | 1.50 | 2.00 | 3.00 | 250 |" in table
    assert "| hairseg int8 --flip-tta | 0.9000 / 0.9500 | — | 4.00 | 5.00 | — |" in table
    assert "bench --end-to-end --flip-tta" in table
    del card["metrics"]["set"]["hairseg int8 --flip-tta"]
    assert "--flip-tta" not in ship.render_table(card)  # cards from before it: no footnote


def test_ship_records_every_training_stage_of_a_fine_tuned_model(tmp_path):
    """A model fine-tuned with --init-from is reproducible only with the run it started from: the model
    card lists both commands, first to last."""
    ship = _load("ship_default_model")
    base = {"data": ["/d/celebamask-hq-hair"], "arch": "fused_unet", "width": 0.75, "batch": 16,
            "lr": 0.003, "seed": 1234, "patience": 10, "data_weights": None, "init_from": None}
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    for run, options, best in ((first, {**base, "img_size": 160, "epochs": 3}, 2),
                               (second, {**base, "img_size": 192, "epochs": 2, "lr": 0.0015,
                                         "init_from": str(first / "model.keras"), "augment": "light"}, 1)):
        run.mkdir(parents=True)
        (run / "train_options.json").write_text(json.dumps(options))
        history = [{"epoch": e, "val_iou": 0.9 if e == best else 0.5} for e in range(1, options["epochs"] + 1)]
        (run / "history.json").write_text(json.dumps(history))
    # The second run kept its last epoch (--keep last), not its best.
    (second / "train_options.json").write_text(json.dumps({**json.loads(
        (second / "train_options.json").read_text()), "keep": "last"}))

    stages = ship.training_stages(second)
    assert [st["run"] for st in stages] == ["first", "second"]
    assert [(st["img_size"], st["epochs_run"], st["kept_epoch"]) for st in stages] == [(160, 3, 2), (192, 2, 2)]
    assert "--init-from" not in stages[0]["command"]
    assert "--augment" not in stages[0]["command"]  # options from before --augment: the default
    assert "--img-size 192" in stages[1]["command"]
    assert ("--init-from runs/first/model.keras --augment light --keep last --out runs/second"
            in stages[1]["command"])
    text = ship._stages_text({"stages": stages, "seed": 1234, "epochs_run": 2, "kept_epoch": 1})
    assert "3 epochs at 160 px from random weights" in text and "then 2 epochs at 192 px" in text
    assert "model with light augmentation (seed" in text and text.count("augmentation") == 1
    assert "(seed 1234, best epoch 2)" in text and "(seed 1234, kept the last epoch, 2)" in text

    # A run that averaged its last epochs (--average-last) says so, with the epochs, and its command too.
    (second / "train_options.json").write_text(json.dumps({**json.loads(
        (second / "train_options.json").read_text()), "keep": "best", "average_last": 2}))
    averaged = ship.training_stages(second)[1]
    assert averaged["averaged_epochs"] == [1, 2] and averaged["kept_epoch"] == 2
    assert "--average-last 2 --out runs/second" in averaged["command"] and "--keep" not in averaged["command"]
    text = ship._stages_text({"stages": [stages[0], averaged]})
    assert "(seed 1234, kept the average of the weights of epochs 1-2)" in text
    settled = ship._stages_text({"stages": [stages[0], {**averaged, "augment": "settle"}]})
    assert "model with no augmentation but mirroring (seed" in settled
    wide = ship._stages_text({"stages": [stages[0], {**averaged, "augment": "wide"}]})
    assert "with light augmentation and 30% of the photos shrunk to 0.35-0.7x (small heads) (seed" in wide

    # A distilled run names its teacher the way it names the run it started from.
    (second / "train_options.json").write_text(json.dumps({**json.loads(
        (second / "train_options.json").read_text()), "teacher": str(first / "model.keras"),
        "distill_weight": 0.5}))
    distilled = ship.training_stages(second)[1]
    assert ("--teacher runs/first/model.keras --distill-weight 0.5 --out runs/second"
            in distilled["command"])

    # A run stopped by hand (state.json: not finished, not stopped early) kept its last epoch's model:
    # its command says where it stopped, since the command alone would train the whole schedule.
    (second / "state.json").write_text(json.dumps({"finished": False, "stopped_early": False}))
    stopped = ship.training_stages(second)[1]
    assert stopped["command"].endswith("--out runs/second  # stopped by hand after epoch 2 of 2")
    assert "2 of 2 planned epochs (stopped by hand) at 192 px" in ship._stages_text({"stages": [stages[0], stopped]})
    (second / "state.json").write_text(json.dumps({"finished": False, "stopped_early": True}))  # patience
    assert "#" not in ship.training_stages(second)[1]["command"]
    bands = ship._stages_text({"stages": [stages[0], {**averaged, "augment": "bands-light"}]})
    assert "30% of the photos cut to a band of rows or columns (frames that cut through the head) (seed" in bands

    (first / "train_options.json").unlink()  # the parent run is gone: refuse to write a card that lies
    with pytest.raises(SystemExit, match="no run folder"):
        ship.training_stages(second)


def test_ship_continues_the_bundled_models_lineage_from_its_card(tmp_path):
    """Fine-tuning the bundled float model (--init-from hairseg_edge/models/hairseg_float.keras) records the
    stages its card lists, then the new run, which names the shipped model as the run that made it."""
    ship = _load("ship_default_model")
    models = tmp_path / "models"
    models.mkdir()
    (models / "hairseg_float.keras").write_bytes(b"weights of v11")
    earlier = [{"run": "default-v9", "command": "hairseg-edge train ... --out runs/default-v9"},
               {"run": "default-v11", "command": "hairseg-edge train ... --out runs/default-v11"}]
    card = {"training": {"stages": earlier}}
    (models / "model_card.json").write_text(json.dumps(card))
    run = tmp_path / "runs" / "default-v15"
    run.mkdir(parents=True)
    (run / "train_options.json").write_text(json.dumps(
        {"data": ["/d/celebamask-hq-hair"], "arch": "fused_unet", "width": 0.75, "batch": 16, "lr": 0.0002,
         "seed": 1234, "patience": 20, "img_size": 224, "epochs": 2, "augment": "wide", "average_last": 2,
         "init_from": str(models / "hairseg_float.keras")}))
    (run / "history.json").write_text(json.dumps([{"epoch": 1, "val_iou": 0.5}, {"epoch": 2, "val_iou": 0.4}]))

    stages = ship.training_stages(run)
    assert [st["run"] for st in stages] == ["default-v9", "default-v11", "default-v15"]
    assert "--init-from runs/default-v11/model.keras --augment wide" in stages[-1]["command"]

    # A card that names another float file's digest is not this file's lineage: refuse, as for a lost run.
    (models / "model_card.json").write_text(json.dumps({**card, "float_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="no run folder"):
        ship.training_stages(run)
    (models / "model_card.json").write_text(json.dumps(
        {**card, "float_sha256": ship.file_sha256(models / "hairseg_float.keras")}))
    assert len(ship.training_stages(run)) == 3


def test_zoom_out_shrinks_image_and_mask_together():
    scale = _load("scale_robustness")
    rgb = np.zeros((100, 80, 3), np.uint8)
    rgb[:, :, 0] = np.arange(80, dtype=np.uint8)  # a horizontal ramp: the repeated border keeps the edges
    mask = np.zeros((100, 80), bool)
    mask[20:80, 20:60] = True
    image, target = scale.C.zoom_out(rgb, mask, 0.5)
    assert image.shape == rgb.shape and target.shape == mask.shape
    assert target.sum() == pytest.approx(mask.sum() * 0.25, rel=0.05)
    ys, xs = np.nonzero(target)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(49.5, abs=1.5)  # centred
    assert image[50, 0, 0] <= 1 and image[50, -1, 0] >= 77  # edge pixels repeated, no black frame
    same_image, same_mask = scale.C.zoom_out(rgb, mask, 1.0)
    assert same_image is rgb and same_mask is mask
    plain, plain_target = scale.C.zoom_out(rgb, mask, 0.5, border="plain")  # benchmarks/roi.py's canvas
    assert np.array_equal(plain_target, target)
    assert (plain[50, 0] == scale.C.PLAIN_GREY).all() and (plain[50, -1] == scale.C.PLAIN_GREY).all()


def test_scale_robustness_end_to_end_on_synthetic_faces(tmp_path, monkeypatch):
    from hairseg_edge.synth import make_dataset

    scale = _load("scale_robustness")
    data = make_dataset(tmp_path / "data", n=4, size=[(96, 96)], seed=5)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(sorted(p.stem for p in (data / "images").iterdir())) + "\n")
    monkeypatch.setattr(scale.C, "RESULTS_DIR", tmp_path / "results")
    assert scale.main(["--data", str(data), "--ids", str(ids), "--zooms", "1.0,0.5", "--no-peers"]) == 0
    result = json.loads((tmp_path / "results" / "scale_robustness.json").read_text())
    assert set(result["iou"]["bundled int8"]) == {"1", "0.5"}
    assert all(0.0 <= v <= 1.0 for v in result["iou"]["bundled int8"].values())
    # results are not overwritten unasked; bad zooms are exit 2
    assert scale.main(["--data", str(data), "--ids", str(ids), "--no-peers"]) == 2
    assert scale.main(["--data", str(data), "--ids", str(ids), "--zooms", "0", "--force"]) == 2


def test_cut_frames_cuts_image_and_mask_alike_and_scores_each_band(tmp_path, monkeypatch):
    from hairseg_edge.synth import make_dataset

    cuts = _load("cut_frames")
    rgb = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    mask = np.zeros((100, 80), bool)
    mask[:30] = True  # hair at the top: the 40-100% band has none left
    image, target = cuts.cut(rgb, mask, "rows", 0.4, 1.0)
    assert image.shape == (60, 80, 3) and np.array_equal(image, rgb[40:]) and not target.any()
    image, target = cuts.cut(rgb, mask, "columns", 0.25, 0.75)
    assert image.shape == (100, 40, 3) and np.array_equal(target, mask[:, 20:60])
    data = make_dataset(tmp_path / "data", n=3, size=[(96, 96)], seed=5)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(sorted(p.stem for p in (data / "images").iterdir())) + "\n")
    monkeypatch.setattr(cuts.C, "RESULTS_DIR", tmp_path / "results")
    assert cuts.main(["--data", str(data), "--ids", str(ids), "--no-peers"]) == 0
    scores = json.loads((tmp_path / "results" / "cut_frames.json").read_text())["scores"]["bundled int8"]
    assert set(scores) == set(cuts.CUTS)
    assert all(0.0 <= v["iou"] <= 1.0 and 0.0 <= v["false_hair"] <= 1.0 for v in scores.values())
    assert scores["whole frame"]["iou"] > 0.5  # the bundled model finds the generated hair
    assert cuts.main(["--data", str(data), "--ids", str(ids), "--no-peers"]) == 2  # not overwritten unasked


def test_resample_cost_end_to_end_on_synthetic_faces(tmp_path, monkeypatch):
    from hairseg_edge.synth import make_dataset

    resample = _load("resample_cost")
    data = make_dataset(tmp_path / "data", n=3, size=[(96, 96)], seed=6)
    monkeypatch.setattr(resample.C, "RESULTS_DIR", tmp_path / "results")
    threads = resample.cv2.getNumThreads()
    assert resample.main(["--data", str(data), "--runs", "3"]) == 0
    assert resample.cv2.getNumThreads() == threads  # its one-thread timing does not leak into the caller
    rows = json.loads((tmp_path / "results" / "resample_cost.json").read_text())["rows"]
    assert len(rows) == len(resample.CASES) and all(r["photos"] == 4 for r in rows)
    # close to area averaging on real and generated photos, never the same file twice unasked
    assert all(r["psnr_db_min"] > 30 and r["contract_ms"] > 0 for r in rows)
    assert resample.main(["--runs", "3"]) == 2
    assert resample.main(["--data", str(tmp_path / "missing"), "--force"]) == 2


def test_threshold_scores_training_photos_only_on_synthetic_faces(tmp_path, monkeypatch):
    """threshold.py picks thresholds on training photos and scores the validation ids at 0.5 alone; a
    data set without a recorded validation list, or a missing model, is exit 2; results are not
    overwritten unasked."""
    from hairseg_edge.synth import make_dataset

    threshold = _load("threshold")
    data = make_dataset(tmp_path / "faces", n=6, size=[(96, 96)], seed=7)
    ids = sorted(p.stem for p in (data / "images").iterdir())
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "faces_val.txt").write_text("\n".join(ids[:2]) + "\n")
    monkeypatch.setattr(threshold.C, "RESULTS_DIR", tmp_path / "results")
    args = ["--data", str(data), "--splits", str(splits), "--limit", "3"]
    assert threshold.main(args) == 0
    result = json.loads((tmp_path / "results" / "threshold.json").read_text())
    faces = result["scores"]["faces"]
    assert (faces["train_images"], faces["val_images"]) == (3, 2)  # 4 training photos, every other one
    assert list(faces["train_iou"]) == [f"{t:g}" for t in threshold.THRESHOLDS] and "0.5" in faces["train_iou"]
    assert all(0.0 <= v <= 1.0 for v in faces["train_iou"].values())
    assert faces["best_threshold"] in threshold.THRESHOLDS and 0.0 <= faces["val_iou_at_0.5"] <= 1.0
    # the split really is by the recorded ids: the validation photos are never among the scored training ones
    train, val = threshold.split_samples(data, splits / "faces_val.txt", 10)
    assert {s.id for s in val} == set(ids[:2]) and not {s.id for s in train} & set(ids[:2])
    assert threshold.main(args) == 2  # exists
    assert threshold.main([*args, "--force", "--model", str(tmp_path / "none.tflite")]) == 2
    (splits / "faces_val.txt").unlink()
    assert threshold.main([*args, "--force"]) == 2


def test_label_noise_measures_error_structure_and_the_mislabelled_photos(tmp_path, monkeypatch):
    """label_noise.py: the share of wrong pixels near the labelled boundary and the IoU of each listed
    photo are computed as stated (checked with predictions whose errors are known), a real run on
    generated faces writes both tables, and bad lists are exit 2 without overwriting anything."""
    import cv2

    from hairseg_edge.data import iter_samples, open_dataset
    from hairseg_edge.synth import make_dataset

    noise = _load("label_noise")
    data = make_dataset(tmp_path / "faces", n=6, size=[(96, 96)], seed=3)
    samples = open_dataset(data).samples
    ids = [s.id for s in samples]
    truths = iter([m > 0 for _, _, m in iter_samples(samples)])  # measure() reads the photos in this order

    class Grown:  # each photo's label grown by one pixel: every wrong pixel lies within 1 px of its boundary
        def segment(self, rgb):
            truth = next(truths)
            assert truth.shape == rgb.shape[:2]
            return type("S", (), {"mask": cv2.dilate(truth.astype(np.uint8), np.ones((3, 3), np.uint8))})

    scores = noise.measure(Grown(), samples, {ids[0]})
    assert scores["wrong_within_px"]["1"] == 1.0 and 0.5 < scores["iou"] < 1.0
    assert set(scores["listed_iou"]) == {ids[0]} and scores["photos"] == len(samples)
    assert scores["wrong_in_worst_tenth"] > 0
    truths = iter([m > 0 for _, _, m in iter_samples(samples)])
    assert noise.measure(Grown(), samples, set(ids))["iou_without_listed"] is None  # every photo listed

    val = tmp_path / "val.txt"
    val.write_text("\n".join(ids[:4]) + "\n")
    listed = tmp_path / "errors.txt"
    listed.write_text(f"# comment\n{ids[1]}  # a hand is labelled hair\n")
    monkeypatch.setattr(noise.C, "RESULTS_DIR", tmp_path / "results")
    args = ["--data", str(data), "--val-ids", str(val), "--label-errors", str(listed), "--no-peers"]
    assert noise.main(args) == 0
    result = json.loads((tmp_path / "results" / "label_noise.json").read_text())
    bundled = result["scores"]["hairseg int8 (bundled)"]
    assert bundled["photos"] == 4 and list(bundled["listed_iou"]) == [ids[1]]
    assert result["label_errors"] == {ids[1]: "a hand is labelled hair"}
    page = (tmp_path / "results" / "label_noise.md").read_text()
    assert "a hand is labelled hair" in page and "wrong px within 2 px" in page
    assert noise.main(args) == 2  # results exist: not overwritten unasked
    listed.write_text(f"{ids[5]}  # not a validation photo\n")
    assert noise.main([*args, "--force"]) == 2
    listed.write_text("# nothing listed\n")
    assert noise.main([*args, "--force"]) == 2


def test_ship_card_cites_the_memorisation_probe_when_measured():
    ship = _load("ship_default_model")
    old = ship._in_sample_text({})
    assert "probably in those peers' training data" in old and "label_errors" not in old
    iou = {"hairseg int8": 0.547, "mediapipe-hair": 0.375, "bisenetv2-celebamask": 0.7549, "community-mobile": 0.872}
    text = " ".join(ship._in_sample_text({"mislabelled_iou": {"photos": 6, "iou": iou}}).split())
    assert "On the 6 validation photos whose hair label is plainly wrong" in text
    assert "(mean IoU 0.87 and 0.75)" in text and "(ours 0.55, MediaPipe's 0.38;" in text
    assert "figures are in-sample while ours are not" in text and "probably" not in text


def test_ship_records_the_lineage_of_an_average_once_per_run(tmp_path):
    """A soup (hairseg-edge average) of two fine-tunes of one run: the card lists the shared run once, each
    branch, then the average's own command; a model changed since it was averaged, or two different runs
    under one name, are refused rather than recorded wrongly."""
    ship = _load("ship_default_model")
    from hairseg_edge.imageio import file_sha256

    runs = tmp_path / "runs"
    base = {"data": ["/d/celebamask-hq-hair"], "arch": "fused_unet", "width": 0.75, "batch": 16, "lr": 0.001,
            "seed": 1234, "patience": 10, "img_size": 224, "epochs": 2, "data_weights": [3, 2, 1]}

    def run(name: str, **options) -> Path:
        folder = runs / name
        folder.mkdir(parents=True)
        (folder / "train_options.json").write_text(json.dumps({**base, **options}))
        (folder / "history.json").write_text(json.dumps([{"epoch": 1, "val_iou": 0.5},
                                                         {"epoch": 2, "val_iou": 0.6}]))
        (folder / "model.keras").write_bytes(name.encode())
        return folder

    root = run("root")
    left = run("left", init_from=str(root / "model.keras"), augment="settle", seed=1)
    right = run("right", init_from=str(root / "model.keras"), augment="wide", seed=2,
                init_from_sha256=file_sha256(root / "model.keras"))
    soup = runs / "soup"
    soup.mkdir()
    record = {"kind": "average", "input_size": 224, "models": [
        {"path": str(left / "model.keras"), "sha256": file_sha256(left / "model.keras"), "weight": 0.5},
        {"path": str(right / "model.keras"), "sha256": file_sha256(right / "model.keras"), "weight": 0.5}]}
    (soup / "average.json").write_text(json.dumps(record))

    stages = ship.training_stages(soup)
    assert [st["run"] for st in stages] == ["root", "left", "right", "soup"]
    assert stages[-1]["command"] == ("hairseg-edge average runs/left/model.keras runs/right/model.keras "
                                     "--out runs/soup")
    assert stages[-1]["from"] == ["left", "right"] and stages[2]["from"] == ["root"]
    text = " ".join(ship._stages_text({"stages": stages}).split())
    assert "then right: 2 epochs at 224 px starting from root's model" in text
    assert "then soup: the mean of the weights of left and right (`hairseg-edge average`" in text
    assert ship.model_options(soup)["arch"] == "fused_unet"  # from the first model it averaged

    # Unequal weights appear in the command and the prose.
    record["models"][1]["weight"] = 0.75
    record["models"][0]["weight"] = 0.25
    (soup / "average.json").write_text(json.dumps(record))
    stages = ship.training_stages(soup)
    assert "--weights 0.25,0.75 --out runs/soup" in stages[-1]["command"]
    assert "left and right weighted 0.25 / 0.75" in ship._stages_text({"stages": stages})

    (right / "model.keras").write_bytes(b"trained on since")  # not the model that was averaged
    with pytest.raises(SystemExit, match="no longer the model this run started from"):
        ship.training_stages(soup)
    (right / "model.keras").write_bytes(b"right")
    (root / "model.keras").write_bytes(b"another root")  # right recorded its start's digest, left did not
    with pytest.raises(SystemExit, match="right/train_options.json: .* no longer the model"):
        ship.training_stages(soup)
    (root / "model.keras").write_bytes(b"root")

    # Two branches whose ancestors are different runs with one folder name: refused, not merged.
    other = tmp_path / "elsewhere" / "root"
    other.mkdir(parents=True)
    (other / "train_options.json").write_text(json.dumps({**base, "lr": 0.5}))
    (other / "history.json").write_text((root / "history.json").read_text())
    (other / "model.keras").write_bytes(b"root")
    (left / "train_options.json").write_text(json.dumps({**base, "init_from": str(other / "model.keras")}))
    record["models"][0]["sha256"] = file_sha256(left / "model.keras")
    (soup / "average.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="both named 'root'"):
        ship.training_stages(soup)


def test_loss_targets_ceiling_orders_the_maps_and_guards_its_results(tmp_path, monkeypatch):
    """loss_targets.py ceiling: a label round-tripped through 224 px area shares comes back nearer itself
    than through nearest sampling, and the head's 112 px loses more than 224 px; replacing the ceiling
    needs --force; ids absent from the data or a model that is not a .keras file are exit 2."""
    from hairseg_edge.synth import make_dataset

    lt = _load("loss_targets")
    data = make_dataset(tmp_path / "faces", n=4, size=[(256, 256)], seed=5)
    ids = sorted(p.stem for p in (data / "images").iterdir())
    val = tmp_path / "val.txt"
    val.write_text("\n".join(ids) + "\n")
    iou = lt.ceiling(data, val)
    near, area, head_near, head_area = (iou[k] for k in (
        "224 px, nearest (today's targets)", "224 px, area share (soft targets)",
        "112 px head, nearest", "112 px head, area share"))
    assert 0.9 < near < area <= 1.0 and head_near < near and head_area < area and head_near < head_area

    monkeypatch.setattr(lt, "OUT_JSON", tmp_path / "results" / "loss_targets.json")
    monkeypatch.setattr(lt, "OUT_MD", tmp_path / "results" / "loss_targets.md")
    args = ["ceiling", "--data", str(data), "--ids", str(val)]
    assert lt.main(args) == 0
    assert "| 224 px, area share (soft targets) |" in lt.OUT_MD.read_text()
    before = lt.OUT_JSON.read_bytes()
    assert lt.main(args) == 2 and lt.OUT_JSON.read_bytes() == before  # not replaced unasked
    assert lt.main([*args, "--force"]) == 0
    other = tmp_path / "other.txt"
    other.write_text("not-an-id\n")
    assert lt.main(["ceiling", "--data", str(data), "--ids", str(other), "--force"]) == 2
    assert lt.main(["evaluate", f"x={tmp_path / 'missing.keras'}", "--data-root", str(tmp_path)]) == 2


def test_loss_targets_variants_change_the_loss_and_the_targets_as_stated(monkeypatch):
    """The lovasz variant's loss is BCE plus the Lovasz extension, which equals the Jaccard loss 1 - IoU at
    a binary prediction (Berman et al. 2018); the soft variant's targets hold each pixel's share of hair,
    in the letterbox and in the camera-style resize alike. The variants are registered by name (the
    training registries); nothing of the contract or the pipeline is replaced, and the default loss and
    targets stay what they were."""
    import hairseg_edge.training.losses as losses
    import hairseg_edge.training.pipeline as pipeline
    from hairseg_edge import contract

    # The registries get the variants only for this test.
    monkeypatch.setattr(losses, "LOSSES", dict(losses.LOSSES))
    monkeypatch.setattr(pipeline, "TARGET_MODES", dict(pipeline.TARGET_MODES))
    lt = _load("loss_targets")
    letterbox_mask, cv2_module = contract.letterbox_mask, pipeline.cv2
    assert lt.register_lovasz() == ["--loss", "bce_lovasz"]
    assert lt.register_soft_targets() == ["--targets", "area"]
    assert contract.letterbox_mask is letterbox_mask and pipeline.cv2 is cv2_module  # nothing patched

    rng = np.random.default_rng(0)
    truth = (rng.random((2, 16, 16, 1)) > 0.6).astype(np.float32)
    pred = (rng.random((2, 16, 16, 1)) > 0.5).astype(np.float32)
    loss = losses.make_loss("bce_lovasz")
    assert loss.name == "bce_lovasz"
    from hairseg_edge.training.keras_compat import keras

    bce = float(keras.backend.binary_crossentropy(truth, np.clip(pred, 1e-6, 1 - 1e-6)).numpy().mean())
    jaccard_loss = 1.0 - (truth * pred).sum() / np.maximum(truth, pred).sum()
    assert float(loss(truth, pred)) - bce == pytest.approx(jaccard_loss, abs=1e-4)
    assert float(loss(truth, truth)) < 1e-4  # a perfect prediction costs nothing
    assert losses.make_loss("bce_dice").name != "bce_lovasz"  # the default loss is untouched

    edge = np.zeros((256, 256), np.uint8)
    edge[:, :101] = 1
    target = pipeline.prepare_pair(np.zeros((256, 256, 3), np.uint8), edge, 224, "area")[1][..., 0]
    assert target.min() == 0.0 and target.max() == 1.0 and 0.0 < target[0, 88] < 1.0
    assert target[0].sum() == pytest.approx(101 * 224 / 256, abs=1e-3)  # the hair's area is kept
    shrunk = pipeline.target_mode("area").shrink(edge, (224, 224))
    assert shrunk.dtype == np.float32 and np.allclose(shrunk, target)
    nearest = pipeline.prepare_pair(np.zeros((256, 256, 3), np.uint8), edge, 224)[1][..., 0]
    assert set(np.unique(nearest)) <= {0.0, 1.0}  # the default targets are still the contract's


def test_large_candidates_parses_candidates_and_marks_the_budget():
    lc = _load("large_candidates")
    assert lc.parse_candidate("fused_unet_ctx=1.25@256") == ("fused_unet_ctx", 1.25, 256)
    for bad in ("fused_unet", "fused_unet=1.0", "fused_unet=x@256"):
        with pytest.raises(lc.InputError, match="ARCH=WIDTH@SIZE"):
            lc.parse_candidate(bad)


@pytest.mark.slow
@pytest.mark.train
def test_large_candidates_end_to_end_at_toy_scale(toy_data, tmp_path, peers_dir):
    """Two tiny candidates, converted for real and timed in one bench run beside the bundled model and
    MediaPipe's; the budget column follows the sizes and the measured times."""
    results = tmp_path / "results"
    proc = _run("large_candidates.py", ["--data", str(toy_data), "--candidate", "fused_unet=0.25@64",
                                        "--candidate", "fused_unet_ctx=0.25@64", "--calibration", "4",
                                        "--runs", "5", "--rounds", "1", "--results", str(results)],
                tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((results / "large_candidates.json").read_text())
    rows = {r["name"]: r for r in study["rows"]}
    assert set(rows) >= {"fused_unet 0.25@64", "fused_unet_ctx 0.25@64", "mediapipe-hair"}
    mp = rows["mediapipe-hair"]["p50_ms"]
    for r in study["rows"]:
        assert r["p50_ms"] > 0 and r["bytes"] > 0
        assert r["fits"] == (r["bytes"] <= 1_500_000 and r["p50_ms"] <= mp / 2)
    assert rows["fused_unet_ctx 0.25@64"]["params"] > rows["fused_unet 0.25@64"]["params"]
    assert "| fused_unet_ctx 0.25@64 | 64 |" in (results / "large_candidates.md").read_text()
    # An existing result is not overwritten without --force.
    again = _run("large_candidates.py", ["--data", str(toy_data), "--results", str(results)], tmp_path / "cache")
    assert again.returncode == 2 and "--force" in again.stderr


def test_ship_large_tier_card_sits_beside_the_default_and_names_its_rows_by_tier(tmp_path):
    """--tier large: its card JSON goes beside the default's, MODEL_CARD.md has a section per tier,
    and its tables name its own model `large int8` next to the fast tier's rows."""
    ship = _load("ship_default_model")
    from hairseg_edge.models import MODELS_DIR, TIERS

    default = json.loads((MODELS_DIR / "model_card.json").read_text())
    (tmp_path / "model_card.json").write_text(json.dumps(default))
    large = {**json.loads(json.dumps(default)), "tier": "large", "name": "hairseg-edge large hair segmenter",
             "input_size": 256}
    for rows in large["metrics"].values():
        rows[ship.FAST_INT8] = rows["hairseg int8"]
    ship.install_card(large, tmp_path)
    assert json.loads((tmp_path / TIERS["large"].card).read_text())["tier"] == "large"
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert text.index("# Model card: hairseg-edge default hair segmenter") < text.index(
        "# Model card: hairseg-edge large hair segmenter (`--model large`)")
    assert "`hairseg_large_int8.tflite` (`--model large`" in text
    table = ship.render_table(large)
    assert table.startswith("# The large tier vs the fast default and the public hair models")
    assert "| large int8 |" in table and "| fast int8 |" in table and "| hairseg int8 |" not in table
    assert "| large int8 --flip-tta |" in table
    assert ship.render_table(default) == (MODELS_DIR.parents[1] / "benchmarks" / "results"
                                          / "default_model.md").read_text()  # the default's page as before
