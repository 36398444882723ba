"""One process vs two workers on localhost vs mirrored on two logical CPUs: speed and agreement.

Each way runs ``hairseg-edge train`` for one epoch with the same seed, data and *global* batch (one process:
``--batch G --lr 2L``; two replicas: ``--batch G/2 --lr L``, since the rate is ``--lr x replicas``), then
the weights of the three epoch-1 checkpoints are compared. The differences left come from BatchNorm
statistics computed per replica (G/2 images instead of G) and from summation order in the all-reduce.

On one 2-core machine no speed-up is expected: the same two cores do the same work, plus the all-reduce
of every gradient. See docs/distributed.md for what scales on real hosts.

    python benchmarks/distributed.py                    # generated faces, a few minutes
    python benchmarks/distributed.py --data DATA --limit 256

Writes benchmarks/results/distributed.{json,md}; exits 1 when the weights disagree beyond --tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C  # benchmarks/ is on sys.path when this script runs
import numpy as np

WAYS = ("1 process", "2 workers (localhost)", "mirrored, 2 logical CPUs", "1 process, again")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train_args(a: argparse.Namespace, out: Path, batch: int, lr: float) -> list[str]:
    args = ["-m", "hairseg_edge", "train", "--arch", a.arch, "--img-size", str(a.img_size), "--width",
            str(a.width), "--epochs", "1", "--batch", str(batch), "--lr", f"{lr:g}", "--seed", "1234",
            "--augment", "none", "--out", str(out)]
    for d in a.data:
        args += ["--data", str(d)]
    if a.limit:
        args += ["--limit", str(a.limit)]
    return args


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(C.REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "160", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_way(way: str, a: argparse.Namespace, work: Path) -> dict:
    out = work / C.slug(way)
    log = work / f"{C.slug(way)}.log"
    g = a.global_batch
    started = time.monotonic()
    if way in (WAYS[0], WAYS[3]):
        C.run_child([sys.executable, *_train_args(a, out, g, 2 * a.lr)], log, what=way)
    elif way == WAYS[2]:
        C.run_child([sys.executable, *_train_args(a, out, g // 2, a.lr), "--strategy", "mirrored"], log,
                    what=way, env={"HAIRSEG_CPU_REPLICAS": "2"})
    else:
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        procs = []
        for k in range(2):
            env = _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": k}}))
            fh = open(work / f"{C.slug(way)}-{k}.log", "w")
            procs.append(subprocess.Popen([sys.executable, *_train_args(a, out, g // 2, a.lr)], env=env,
                                          stdout=fh, stderr=subprocess.STDOUT, cwd=C.REPO))
        codes = [p.wait(timeout=1800) for p in procs]
        if codes != [0, 0]:
            raise C.StageFailed(f"{way} failed (exit codes {codes}); see {work}")
    seconds = time.monotonic() - started
    history = C.read_json(out / "history.json")
    return {"way": way, "out": str(out), "wall_s": round(seconds, 1), "epoch_s": history[0]["seconds"],
            "images_per_s": history[0]["images_per_s"], "loss": history[0]["loss"],
            "val_iou": history[0]["val_iou"], "lr": history[0]["lr"]}


def weights_of(run: Path) -> list[np.ndarray]:
    from hairseg_edge.training.keras_compat import keras

    model = keras.models.load_model(run / "checkpoint-epoch-0001.keras", safe_mode=True, compile=False)
    return [np.asarray(w, np.float64) for w in model.get_weights()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, action="append", help="data folder(s); default: generated faces")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--images", type=int, default=256, help="generated faces when no --data")
    p.add_argument("--arch", default="mobile_unet")
    p.add_argument("--img-size", type=int, default=96)
    p.add_argument("--width", type=float, default=0.35)
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3, help="--lr of a two-replica run (x2 for one)")
    p.add_argument("--tolerance", type=float, default=0.15,
                   help="largest norm of the difference of two ways' weights, relative to the norm of the "
                        "one-process update from the common start")
    p.add_argument("--out", type=Path, default=C.RESULTS_DIR)
    a = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hairseg-dist-") as tmp:
        work = Path(tmp)
        if not a.data:
            from hairseg_edge.synth import make_dataset

            a.data = [make_dataset(work / "faces", n=a.images, size=[(128, 128), (112, 144)], seed=11)]
        rows = [run_way(way, a, work) for way in WAYS]
        # The starting weights: the same seed builds the same model in every way.
        from hairseg_edge.training import archs
        from hairseg_edge.training.keras_compat import keras

        keras.utils.set_random_seed(1234)
        start = [np.asarray(w, np.float64) for w in archs.build_model(a.arch, a.img_size, a.width).get_weights()]
        trained = [weights_of(Path(r["out"])) for r in rows]
    flat_start = np.concatenate([w.ravel() for w in start])
    flats = [np.concatenate([w.ravel() for w in ws]) for ws in trained]
    update_norm = float(np.linalg.norm(flats[0] - flat_start))
    pairs = []
    for i, j in ((0, 3), (0, 1), (0, 2), (1, 2)):
        d = flats[i] - flats[j]
        pairs.append({"a": WAYS[i], "b": WAYS[j], "max_abs": float(np.max(np.abs(d))),
                      "relative_to_update": float(np.linalg.norm(d) / max(update_norm, 1e-12))})
    noise = pairs[0]["relative_to_update"]
    agree = noise == 0.0 and all(pr["relative_to_update"] <= a.tolerance for pr in pairs[1:])
    result = {"machine": C.machine_info(), "command": C.command_line(__file__, argv), "rows": rows,
              "pairs": pairs, "noise_floor": noise, "update_norm": update_norm, "tolerance": a.tolerance, "agree": agree,
              "settings": {"data": [str(d) for d in a.data], "limit": a.limit, "arch": a.arch,
                           "img_size": a.img_size, "width": a.width, "global_batch": a.global_batch}}
    about = (f"One epoch, seed 1234, global batch {a.global_batch}, {a.arch} width {a.width} at {a.img_size} px, "
             "no augmentation. images/s is the whole job's (all workers), over the epoch, including the "
             "first step's graph tracing. **No speed-up is expected on one 2-core machine**: every way "
             "shares the same two cores; two workers add an all-reduce over localhost per step. On real "
             "hosts the rule is about W x one host's images/s for W hosts while each host's input pipeline "
             "keeps up and the gradient all-reduce (4 bytes per parameter per step) is small next to a "
             "step (docs/distributed.md).\n\nAgreement of the weights after the epoch: the norm of the "
             "difference between two ways, relative to the norm of the update one process made from the "
             f"common start ({update_norm:.4g}). The first row checks that one process repeats itself "
             "exactly (it must: 0). The others see the same photos per global step, but BatchNorm "
             "normalises each replica's half batch on its own (two workers take alternate photos of the "
             "shuffled stream, mirrored splits each batch into its first and second half), so the "
             "replicated ways differ from one process, and from each other, by a part of the update "
             "while their losses agree closely. Tolerance: every pair within "
             f"{a.tolerance} of the update (set after a first measurement of 0.094-0.096, 2026-12-04). "
             + ("All pairs agree." if agree else "**Some pair disagrees beyond the tolerance.**") + "\n\n"
             + C.markdown_table(["a", "b", "max |difference|", "difference / update"],
                                [[pr["a"], pr["b"], f"{pr['max_abs']:.3g}", f"{pr['relative_to_update']:.4f}"]
                                 for pr in pairs]))
    C.write_report(a.out / "distributed.json", a.out / "distributed.md", result,
                   title="Distributed training on one machine: speed and agreement", about=about,
                   headers=["way", "images/s (job)", "epoch s", "wall s", "loss", "val IoU", "lr"],
                   rows=[[r["way"], f"{r['images_per_s']:.1f}", f"{r['epoch_s']:.1f}", f"{r['wall_s']:.1f}",
                          f"{r['loss']:.4f}", f"{r['val_iou']:.4f}", f"{r['lr']:g}"] for r in rows])
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
