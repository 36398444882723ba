#!/usr/bin/env python3
"""What mirror test-time augmentation (``--flip-tta``) buys each model, on every validation split.

Each model segments every image of each recorded validation split twice: as it is, and with
``Segmenter(flip_tta=True)`` (the frame and its mirror image, outputs averaged). Global IoU / F1 against
the masks, through the same ``evaluate`` as ``hairseg-edge eval``; the time is the median model call per
image (one pass, or two with flip), one thread, measured on the way, so it is indicative only: for
latency claims see ``ship_default_model.py``.

    python benchmarks/flip_tta.py [--model NAME=FILE.tflite ...] [--no-peers] [--force]

With no ``--model``, the bundled int8 model is measured; the three peers join unless ``--no-peers``.
Results: ``benchmarks/results/flip_tta.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs

from hairseg_edge.errors import InputError
from hairseg_edge.evaluate import evaluate, select_dataset
from hairseg_edge.runtime import Segmenter

SPLITS = C.REPO / "hairseg_edge" / "splits"
SETS = (C.DEFAULT_CELEBA, *C.DEFAULT_WILD)


def measure(models: dict[str, Path], sets: tuple[Path, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {"<set>" or "<set> flip": {"iou", "f1", "n", "p50_ms"}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in models}
    for data in sets:
        ids = SPLITS / f"{data.name}_val.txt"
        dataset = select_dataset(data, ids_file=ids)
        for name, path in models.items():
            for flip in (False, True):
                key = data.name + (" flip" if flip else "")
                try:
                    seg = Segmenter(path, flip_tta=flip)
                except InputError as exc:  # e.g. a class-index output: nothing to average
                    if not flip:
                        raise
                    out[name][key] = {"error": str(exc).split(": ", 1)[-1]}
                    print(f"{data.name:22s} {name:28s} flip=True  n/a: {out[name][key]['error']}")
                    continue
                with seg:
                    result = evaluate(seg, dataset)
                m = result.metrics
                out[name][key] = {"iou": m.iou, "f1": m.f1, "n": m.n, "p50_ms": result.score.p50_ms}
                print(f"{data.name:22s} {name:28s} flip={flip!s:5s} IoU {m.iou:.4f}  F1 {m.f1:.4f}"
                      f"  {result.score.p50_ms:.2f} ms", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_model_options(p)
    p.add_argument("--force", action="store_true", help="Overwrite earlier results.")
    a = p.parse_args(argv)
    out_json, out_md = C.RESULTS_DIR / "flip_tta.json", C.RESULTS_DIR / "flip_tta.md"
    try:
        C.refuse_existing([out_json, out_md], a.force)
        models = C.models_to_measure(a.model, "hairseg int8 (bundled)", peers=not a.no_peers)
        for data in SETS:
            if not data.is_dir():
                raise InputError("no such data folder", data)
        scores = measure(models, SETS)
    except (InputError, ValueError) as exc:
        print(f"flip_tta: {exc}", file=sys.stderr)
        return 2
    result = {"machine": C.machine_info(), "sets": [d.name for d in SETS], "scores": scores,
              "command": C.command_line(__file__, argv)}
    headers = ["model"] + [f"{d.name} IoU: plain / flip (gain)" for d in SETS] + ["ms: plain / flip"]
    rows = []
    for name, s in scores.items():
        cells = []
        for d in SETS:
            plain, flip = s[d.name]["iou"], s[d.name + " flip"].get("iou")
            cells.append(f"{plain:.4f} / n/a" if flip is None
                         else f"{plain:.4f} / {flip:.4f} ({100 * (flip - plain):+.2f})")
        first = SETS[0].name
        flip_ms = s[first + " flip"].get("p50_ms")
        cells.append(f"{s[first]['p50_ms']:.2f} / " + ("n/a" if flip_ms is None else f"{flip_ms:.2f}"))
        rows.append([name, *cells])
    C.write_report(out_json, out_md, result, title="Mirror test-time augmentation (`--flip-tta`)",
                   about="Global IoU on each recorded validation split (`hairseg_edge/splits`), each model as "
                   "it is and with its outputs for the image and the mirror image averaged; gain in points. "
                   f"Time: median model call per image on `{SETS[0].name}`, one thread, taken during the "
                   "scoring (indicative). n/a: the model's output is not a map of scores that can be "
                   "averaged (BiSeNetV2's is a map of class indices).", headers=headers, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
