#!/usr/bin/env python3
"""Two more levers on the CelebAMask-HQ plateau, measured: the loss and the resolution of the targets.

The bundled model's CelebAMask-HQ IoU has sat at 0.891-0.892 through every phase since v7, and most of its
wrong pixels lie within 2 px of the labelled boundary (``label_noise.md``). Two cheap changes aim at the
boundary, each as one settle phase from the bundled v17 (the phase that made v11 and v16):

- **lovasz**: BCE + the Lovasz extension of the Jaccard loss (Berman et al., CVPR 2018) in place of
  BCE + soft Dice. Lovasz is a tight convex surrogate of IoU itself; it is computed over each batch's
  pixels together (batch-global), as the metric counts pixels over the whole set, not per photo.
- **soft**: training targets that keep the label's sub-pixel boundary. Today a 256 px label becomes the
  224 px target by nearest sampling, so each target pixel says only whether its centre is hair; with
  ``soft`` it holds the share of its area that is hair (INTER_AREA), as the image pixel beside it mixes
  the two colours. The random streams are unchanged: each run sees the same photos in the same order.

``ceiling`` first asks what the resolution can cost at most: a perfect model's map at 224 px (or the
head's 112 px, upsampled as the model does), cut at 0.5 after the contract's upsampling to 256 px,
against the label.

    python benchmarks/loss_targets.py ceiling [--data DIR] [--ids FILE] [--force]
    python benchmarks/loss_targets.py train {lovasz,soft} -- TRAIN ARGS (as for hairseg-edge train)
    python benchmarks/loss_targets.py evaluate NAME=MODEL.keras [...] [--force]   # export + score, int8

``train`` registers the variant (a loss in ``training.losses.LOSSES``, a target mode in
``training.pipeline.TARGET_MODES``) and runs ``hairseg-edge train`` in this process with the hidden
``--loss`` / ``--targets`` naming it; nothing of the product is patched. These are experiments, not options
of the product (neither paid; see benchmarks/README.md). ``evaluate`` exports each model to
int8 with the ship script's calibration and scores it as the ship script does (the three validation
splits, the regression subset) and on 200 faces shrunk to 0.6x / 0.4x. Both write into
``benchmarks/results/loss_targets.{json,md}``, keeping the entries they do not measure; replacing an
entry (the ceiling, a model's name) needs ``--force``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as C  # benchmarks/ is on sys.path when this script runs
import cv2
import numpy as np

from hairseg_edge.data import iter_samples
from hairseg_edge.errors import InputError
from hairseg_edge.evaluate import select_dataset
from hairseg_edge.imageio import write_text
from hairseg_edge.metrics import SegmentationMeter

OUT_JSON, OUT_MD = C.RESULTS_DIR / "loss_targets.json", C.RESULTS_DIR / "loss_targets.md"
VAL_IDS = C.REPO / "hairseg_edge" / "splits" / "celebamask-hq-hair_val.txt"
MODEL_SIZE = 224  # the bundled model's input
EVAL_SIZE = 256   # the CelebAMask-HQ photos and labels here


# --- ceiling ---------------------------------------------------------------------------------------------
def ceiling(data: Path, ids_file: Path = VAL_IDS) -> dict[str, float]:
    """Global IoU of the label against itself passed through a map of lower resolution: resized down
    (nearest-centre or area), for the head also through 112 px and the model's own x2 bilinear upsampling,
    then up to the label's size bilinearly and cut at 0.5, as the runtime does with a model's output."""
    samples = select_dataset(data, ids_file=ids_file).samples  # every listed id must be in the data set
    cases = {"224 px, nearest (today's targets)": (MODEL_SIZE, cv2.INTER_NEAREST_EXACT),
             "224 px, area share (soft targets)": (MODEL_SIZE, cv2.INTER_AREA),
             "112 px head, nearest": (MODEL_SIZE // 2, cv2.INTER_NEAREST_EXACT),
             "112 px head, area share": (MODEL_SIZE // 2, cv2.INTER_AREA)}
    meters = {name: SegmentationMeter() for name in cases}
    for _, rgb, mask in iter_samples(samples):
        label = (mask > 0).astype(np.float32)
        h, w = label.shape
        if (h, w) != (EVAL_SIZE, EVAL_SIZE):
            raise InputError(f"expected {EVAL_SIZE}x{EVAL_SIZE} labels, found {w}x{h}", data)
        for name, (size, interp) in cases.items():
            small = cv2.resize(label, (size, size), interpolation=interp)
            if size != MODEL_SIZE:
                small = cv2.resize(small, (MODEL_SIZE, MODEL_SIZE), interpolation=cv2.INTER_LINEAR)
            meters[name].update(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5, label > 0)
    return {name: meter.result().iou for name, meter in meters.items()}


# --- the two variants ------------------------------------------------------------------------------------
def register_lovasz() -> list[str]:
    """Register ``bce_lovasz``: BCE + batch-global Lovasz hinge on the hair probability."""
    from hairseg_edge.training.keras_compat import keras, tf
    from hairseg_edge.training.losses import register_loss

    def lovasz(y_true, prob):
        truth = tf.reshape(y_true, [-1])
        errors = tf.abs(truth - tf.reshape(prob, [-1]))
        order = tf.argsort(tf.stop_gradient(errors), direction="DESCENDING")
        truth_sorted = tf.gather(truth, order)
        hair = tf.reduce_sum(truth_sorted)
        jaccard = 1.0 - (hair - tf.cumsum(truth_sorted)) / (hair + tf.cumsum(1.0 - truth_sorted))
        grad = tf.concat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)  # the Lovasz extension's weights
        return tf.tensordot(tf.gather(errors, order), tf.stop_gradient(grad), 1)

    @keras.saving.register_keras_serializable(package="hairseg_edge_bench")
    class BceLovaszLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            y_true = tf.cast(y_true, tf.float32)
            y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-6, 1.0 - 1e-6)
            bce = tf.reduce_mean(keras.backend.binary_crossentropy(y_true, y_pred), axis=[1, 2, 3])
            return bce + lovasz(y_true, y_pred)  # a scalar: the per-photo BCE's mean is unchanged

    register_loss("bce_lovasz", lambda dice_weight=1.0: BceLovaszLoss(name="bce_lovasz"))
    return ["--loss", "bce_lovasz"]


def register_soft_targets() -> list[str]:
    """Register the ``area`` target mode: every target pixel the share of its area that is hair (the
    random streams stay the same)."""
    import hairseg_edge.training.pipeline as pipeline
    from hairseg_edge import contract

    def soft_letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
        mask = mask[..., 0] if mask.ndim == 3 else mask
        box = contract.letterbox_geometry(mask.shape[0], mask.shape[1], size)
        share = mask if mask.dtype == np.float32 else (mask > 0).astype(np.float32)
        if share.shape != (box.new_h, box.new_w):
            share = cv2.resize(share, (box.new_w, box.new_h), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((size, size), dtype=np.float32)
        canvas[box.top:box.top + box.new_h, box.left:box.left + box.new_w] = np.clip(share, 0.0, 1.0)
        return canvas

    def area_shrink(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The camera-style resize's label: area-averaged, not sampled at pixel centres."""
        return cv2.resize((mask > 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)

    pipeline.register_target_mode("area", pipeline.TargetMode(letterbox=soft_letterbox_mask, shrink=area_shrink))
    edge = np.zeros((EVAL_SIZE, EVAL_SIZE), np.uint8)
    edge[:, :101] = 1  # an edge that falls inside a 224 px target pixel
    target = pipeline.prepare_pair(np.zeros((EVAL_SIZE, EVAL_SIZE, 3), np.uint8), edge, MODEL_SIZE, "area")[1]
    assert 0.0 < target[0, 88, 0] < 1.0, "the soft targets did not take"
    return ["--targets", "area"]


VARIANTS = {"lovasz": register_lovasz, "soft": register_soft_targets}


# --- evaluation ------------------------------------------------------------------------------------------
def evaluate_models(named: list[str], data_root: Path) -> dict[str, dict]:
    models = {}
    for item in named:  # every name checked before the first export
        name, _, path = item.partition("=")
        models[name] = model = Path(path)
        if not name or model.suffix != ".keras" or not model.is_file():
            raise InputError("expected NAME=MODEL.keras naming a trained model", model)
    import scale_robustness
    import ship_default_model as ship

    ship.FLIP_TTA = ()  # the mirrored runs are the ship run's business, not a candidate's
    out: dict[str, dict] = {}
    for name, model in models.items():
        with tempfile.TemporaryDirectory(prefix="loss-targets-") as tmp:
            run = Path(tmp)
            (run / "model.keras").symlink_to(model.resolve())
            report = ship.export(run, data_root, run)
            int8 = next(Path(v["path"]) for v in report["variants"] if v["name"] == "int8")
            scores = ship.evaluate_all({name: (int8, None)}, data_root)
            small = scale_robustness.measure({name: int8}, data_root / "celebamask-hq-hair", VAL_IDS,
                                             [0.6, 0.4], 200)[name]
        out[name] = {"model": str(model), "int8_iou": {k: v[name]["iou"] for k, v in scores.items()},
                     "small_heads_iou": small}
    return out


def render(result: dict[str, Any]) -> str:
    parts = ["# The loss and the targets' resolution, measured\n", C.machine_markdown(result["machine"])]
    if "ceiling" in result:
        parts.append("\n## What resolution can cost at most\n\nGlobal IoU of the CelebAMask-HQ validation "
                     "labels against themselves after a round trip through a lower-resolution map (see the "
                     f"script's docstring). Command: `{result['ceiling']['command']}`\n")
        parts.append(C.markdown_table(["map", "IoU"], [[k, C.fmt(v)] for k, v in
                                                       result["ceiling"]["iou"].items()]))
    if result.get("models"):
        commands = "\n".join(f"    {c}" for c in dict.fromkeys(m["command"] for m in result["models"].values()))
        parts.append("\n## Candidates (int8, the ship script's calibration)\n\nSmall heads: the first 200 "
                     "validation faces shrunk to 0.6x / 0.4x (`scale_robustness.py`). Commands:\n\n"
                     + commands + "\n")
        sets = ("celebamask-hq-hair", "figaro1k-hair-train", "lfw-parts-hair-train", "regression300")
        rows = [[name] + [C.fmt(m["int8_iou"][s]) for s in sets]
                + [f"{m['small_heads_iou']['0.6']:.3f} / {m['small_heads_iou']['0.4']:.3f}"]
                for name, m in result["models"].items()]
        parts.append(C.markdown_table(["model", "CelebAMask-HQ", "Figaro-1k", "LFW", "regression300",
                                       "small heads 0.6x / 0.4x"], rows))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("ceiling")
    c.add_argument("--data", type=Path, default=C.DEFAULT_CELEBA)
    c.add_argument("--ids", type=Path, default=VAL_IDS, help="the validation ids of --data")
    c.add_argument("--force", action="store_true", help="Replace an earlier ceiling.")
    t = sub.add_parser("train")
    t.add_argument("variant", choices=sorted(VARIANTS))
    t.add_argument("train_args", nargs=argparse.REMAINDER)
    e = sub.add_parser("evaluate")
    e.add_argument("models", nargs="+", metavar="NAME=MODEL.keras")
    e.add_argument("--data-root", type=Path, default=C.SHARED / "data",
                   help="the folder holding the three data sets")
    e.add_argument("--force", action="store_true", help="Replace earlier entries of the same names.")
    a = p.parse_args(argv)
    if a.what == "train":
        variant_args = VARIANTS[a.variant]()
        from hairseg_edge.cli import main as cli

        sys.argv = ["hairseg-edge", "train", *[x for x in a.train_args if x != "--"], *variant_args]
        return cli()
    try:
        result = C.read_json(OUT_JSON) if OUT_JSON.is_file() else {}
        if a.what == "ceiling":
            if "ceiling" in result and not a.force:
                raise InputError("holds a ceiling already (pass --force to replace it)", OUT_JSON)
            if not a.data.is_dir():
                raise InputError("no such data folder", a.data)
            result["ceiling"] = {"iou": ceiling(a.data, a.ids), "command": C.command_line(__file__, argv)}
        else:
            again = [n for n in (m.partition("=")[0] for m in a.models) if n in result.get("models", {})]
            if again and not a.force:
                raise InputError(f"holds {', '.join(again)} already (pass --force to replace)", OUT_JSON)
            scored = evaluate_models(a.models, a.data_root)
            for entry in scored.values():
                entry["command"] = C.command_line(__file__, argv)
            result.setdefault("models", {}).update(scored)
    except InputError as exc:
        print(f"loss_targets: {exc}", file=sys.stderr)
        return 2
    result["machine"] = C.machine_info()
    C.write_json(OUT_JSON, result)
    write_text(OUT_MD, render(result), force=True)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
