#!/usr/bin/env python3
"""Which architecture for the large tier: size and one-thread latency of candidate networks, timed in ONE
``hairseg-edge bench`` run beside the bundled int8 model and MediaPipe's hair model.

Latency and file size do not depend on the trained weights, so each candidate is built from the training
registry with random weights (seeded), converted to full-integer int8 (uint8 I/O, the export's
converter, calibrated on a few real photos so the activation ranges are realistic) and timed.
Accuracy, and whether int8 stays within 0.3 point of float, needs the trained model: not measured here.

The tier's budget (issue 28): int8 file <= 1.5 MB and one-thread p50 <= half of MediaPipe's p50 in the
same run. The bench takes every model in its own process; ``--rounds`` repeats the whole bench and the
table keeps each model's median p50 over the rounds (the machine is shared and noisy).

Usage::

    python benchmarks/large_candidates.py --force            # default candidate list
    python benchmarks/large_candidates.py --candidate fused_unet_ctx=1.25@256 --force

Writes ``benchmarks/results/large_candidates.{json,md}``; the .tflite files go to the benchmark cache
(``$HAIRSEG_BENCH_CACHE/large_candidates``), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from hairseg_edge.errors import InputError  # noqa: E402

#: arch=width@input_size. fused_unet 0.75@224 is the bundled fast tier's design (the bundled file is
#: timed as well); the rest trade its spare latency budget for width, input size or low-res depth.
DEFAULT_CANDIDATES = (
    "fused_unet=1.0@224", "fused_unet=1.0@256", "fused_unet=1.25@224", "fused_unet=1.5@224",
    "fused_unet_ctx=1.0@224", "fused_unet_ctx=1.0@256", "fused_unet_ctx=1.25@224", "fused_unet_ctx=1.25@256",
    "fused_unet_ctx=1.5@224", "fused_unet_ctx=1.0@288", "fused_unet_ctx=1.0@320", "fused_unet=1.5@256",
)
MAX_INT8_BYTES = 1_500_000
RESULT_STEM = "large_candidates"


def parse_candidate(text: str) -> tuple[str, float, int]:
    arch, sep, rest = text.partition("=")
    width, at, size = rest.partition("@")
    try:
        if not (sep and at):
            raise ValueError
        return arch, float(width), int(size)
    except ValueError:
        raise InputError(f"bad --candidate {text!r}; expected ARCH=WIDTH@SIZE, e.g. fused_unet=1.0@256") \
            from None


def build_candidate(arch: str, width: float, size: int, out: Path, calibration: list[Path]) -> dict[str, Any]:
    """Build, convert to int8 and write ``out``; returns params/MACs. Runs in this process (TF)."""
    import numpy as np

    from hairseg_edge import contract
    from hairseg_edge.export.convert import convert
    from hairseg_edge.export.options import get_variant
    from hairseg_edge.imageio import read_image
    from hairseg_edge.training import archs
    from hairseg_edge.training.keras_compat import keras

    keras.utils.set_random_seed(1234)
    model = archs.build_model(arch, input_size=size, width=width, batch_size=1)
    row = {"params": int(model.count_params()), "macs": archs.count_macs(model)}
    images = [contract.letterbox_image(read_image(p), size)[0][np.newaxis].astype(np.float32)
              for p in calibration]

    def representative():
        for image in images:
            yield [image]

    if not out.is_file():
        data = convert(model, get_variant("int8"), representative=representative)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    keras.backend.clear_session()
    return row


def bench(models: dict[str, Path], runs: int, log: Path) -> dict[str, float]:
    """One ``hairseg-edge bench`` run over every model (one thread); name -> p50 ms."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "hairseg_edge", "bench", *map(str, models.values()), "--threads", "1",
           "--runs", str(runs), "--warmup", "10", "--json", str(out)]
    with log.open("w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    by_path = {r["model"]: r for r in json.loads(out.read_text())}
    return {name: by_path[str(path)]["p50_ms"] for name, path in models.items()}


def to_markdown(study: dict[str, Any]) -> str:
    mp = study["mediapipe_p50_ms"]
    lines = [
        "# Large-tier candidates: int8 size and one-thread latency (random weights)",
        "",
        C.machine_markdown(study["machine"]),
        "",
        f"Command: `{study['command']}`",
        "",
        f"One `hairseg-edge bench` run per round over every model below (invoke only, one thread, "
        f"{study['runs']} runs, each model in its own process), {study['rounds']} rounds; p50 is the median "
        f"of the rounds' p50s (all rounds listed). Budget: int8 <= {MAX_INT8_BYTES / 1e6:.1f} MB and p50 <= "
        f"half of MediaPipe's p50 in the same run ({mp:.2f} / 2 = {mp / 2:.2f} ms). Load average at the "
        f"start: {study['load_average']} (other agents' jobs share the 2 cores).",
        "",
        "| model | input | params | MACs (M) | int8 KB | p50 ms | p50 per round | vs MediaPipe | fits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in study["rows"]:
        fits = "" if r["name"] == "mediapipe-hair" else ("yes" if r["fits"] else "no")
        macs = "" if r["macs"] is None else f"{r['macs'] / 1e6:.0f}"
        params = "" if r["params"] is None else f"{r['params']:,}"
        lines.append(
            f"| {r['name']} | {r['input_size']} | {params} | {macs} | "
            f"{r['bytes'] / 1e3:.0f} | {r['p50_ms']:.2f} | {' / '.join(f'{v:.2f}' for v in r['p50_rounds'])} | "
            f"{r['p50_ms'] / mp:.2f}x | {fits} |")
    lines += ["", "Accuracy, and whether int8 stays within 0.3 point of float, need the trained model: not "
              "measured here (benchmarks/README.md, \"The large tier's architecture\").", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", action="append", default=[], metavar="ARCH=WIDTH@SIZE")
    p.add_argument("--data", type=Path, default=C.DEFAULT_CELEBA, help="Calibration photos' data set.")
    p.add_argument("--calibration", type=int, default=16,
                   help="Calibration photos, evenly spaced over the data set's images.")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--results", type=Path, default=C.RESULTS_DIR)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    try:
        md, js = args.results / f"{RESULT_STEM}.md", args.results / f"{RESULT_STEM}.json"
        if (md.exists() or js.exists()) and not args.force:
            raise InputError("results already exist (pass --force to overwrite)", md)
        candidates = [parse_candidate(t) for t in (args.candidate or DEFAULT_CANDIDATES)]
        work = C.cache_dir() / RESULT_STEM
        work.mkdir(parents=True, exist_ok=True)
        photos = sorted((args.data / "images").glob("*.jpg"))
        calibration = photos[:: max(1, len(photos) // args.calibration)][: args.calibration]
        if not calibration:
            raise InputError("no calibration photos (images/*.jpg) found", args.data)
        from hairseg_edge.models import default_model_path

        models: dict[str, Path] = {"bundled fast int8 (fused_unet 0.75@224)": default_model_path("int8")}
        meta: dict[str, dict[str, Any]] = {list(models)[0]: {"input_size": 224, "params": 210881,
                                                            "macs": 183_500_000}}
        for arch, width, size in candidates:
            name = f"{arch} {width:g}@{size}"
            out = work / f"{arch}-{width:g}-{size}-int8.tflite"
            print(f"building {name}", flush=True)
            meta[name] = {"input_size": size, **build_candidate(arch, width, size, out, calibration)}
            models[name] = out
        peer = C.peers_dir() / "hair_segmenter.tflite"
        if not peer.is_file():
            raise InputError("MediaPipe's hair model is missing (the budget is relative to it)", peer)
        models["mediapipe-hair"] = peer
        meta["mediapipe-hair"] = {"input_size": 512, "params": None, "macs": None}
        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
        rounds = []
        for r in range(args.rounds):
            print(f"bench round {r + 1}/{args.rounds}", flush=True)
            rounds.append(bench(models, args.runs, work / f"bench-round{r + 1}.log"))
        mp = statistics.median(rd["mediapipe-hair"] for rd in rounds)
        rows = []
        for name, path in models.items():
            p50s = [rd[name] for rd in rounds]
            p50 = statistics.median(p50s)
            size_bytes = path.stat().st_size
            rows.append({"name": name, **meta[name], "bytes": size_bytes, "p50_ms": p50, "p50_rounds": p50s,
                         "fits": size_bytes <= MAX_INT8_BYTES and p50 <= mp / 2})
        study = {"date": C.now(), "machine": C.machine_info(), "runs": args.runs, "rounds": args.rounds,
                 "load_average": " ".join(load), "mediapipe_p50_ms": mp, "rows": rows,
                 "command": "python benchmarks/large_candidates.py " + " ".join(argv or sys.argv[1:])}
        C.write_json(js, study)
        md.write_text(to_markdown(study))
        print(md.read_text())
        return 0
    except InputError as exc:
        print(f"large_candidates: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
