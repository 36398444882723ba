"""The training loop: data sets -> tf.data -> a registered architecture -> ``OUT/model.keras``.

What a run folder holds (all written atomically, so a run killed at any moment can ``--resume``):

* ``model.keras``: the kept model (inference-ready, no optimizer state): the best so far by validation
  IoU, the last epoch (``keep="last"``) or, at the end, the average of the last epochs (``average_last``),
* ``checkpoint-epoch-NNNN.keras``: the last epoch's full state (weights + optimizer) for ``--resume``,
* ``average-epoch-NNNN.npz``: with ``average_last``, the running mean of the window's weights so far,
* ``state.json``: which checkpoint is current, the epoch reached, early-stopping counters, history,
* ``history.csv`` / ``history.json`` / ``training_curve.png``: per-epoch losses and validation metrics,
* ``train_options.json``: the exact options, so the run can be reproduced.

Scale: the CPU when there is no GPU; one GPU (mixed float16); several GPUs (MirroredStrategy); several
hosts (MultiWorkerMirroredStrategy, when ``TF_CONFIG`` is set). Validation always runs in inference
mode (BatchNorm moving statistics), the mode the exported model runs in.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hairseg_edge import contract
from hairseg_edge.data import Dataset, open_dataset
from hairseg_edge.errors import InputError, reason
from hairseg_edge.filesystem import basename, has_scheme
from hairseg_edge.imageio import atomic_path, file_sha256, write_text
from hairseg_edge.metrics import SegmentationMeter

from . import archs
from .distribute import PeerLostError, cluster_role, is_peer_failure, select_strategy, use_mixed_precision
from .keras_compat import keras, tf
from .losses import make_loss
from .distill import distil_into, load_teacher
from .gfile import filesystem_for
from .options import TrainOptions, TrainResult
from .pipeline import AUGMENT_PRESETS, forget_input_errors, make_dataset, reraise_input_error, steps_per_epoch
from .reporting import plot_history, write_history
from .runfolder import (MODEL_FILE, STATE_FILE, init_weights_from, inference_copy, load_checkpoint,
                        read_state, save_keras_atomic)

# --- data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSplits:
    names: tuple[str, ...]
    train: tuple[Dataset, ...]
    val: tuple[Dataset, ...]


def load_splits(folders: Sequence[str], limit: int | None, val_fraction: float) -> DataSplits:
    names, train, val = [], [], []
    for folder in folders:
        ds = open_dataset(folder, limit=limit, fs=filesystem_for(folder))
        tr, va = ds.split(val_fraction)
        if len(tr) == 0:
            raise InputError(f"no training images left after the validation split ({len(ds)} images)", folder)
        if len(va) == 0:  # tiny sets: validate on the training images rather than not at all
            va = tr
        base = (basename(folder) if has_scheme(folder) else Path(folder).resolve().name) or "data"
        name = base
        k = 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
        train.append(tr)
        val.append(va)
    return DataSplits(tuple(names), tuple(train), tuple(val))


# --- validation ------------------------------------------------------------------------------------------
def evaluate_keras(model: keras.Model, val_ds: tf.data.Dataset, threshold: float = contract.THRESHOLD
                   ) -> dict[str, float]:
    """Metrics of a Keras model on a (images, masks) dataset, in inference mode, at the model's input size."""
    meter = SegmentationMeter()
    for images, masks in val_ds:
        prob = model(images, training=False).numpy()[..., 0]
        truth = masks.numpy()[..., 0] > 0.5
        for p, t in zip(prob, truth):
            meter.update(contract.binarize(p, threshold), t)
    return meter.result().to_dict()


# --- the loop --------------------------------------------------------------------------------------------
def cosine_lr(base: float, epoch: int, epochs: int, warmup: int = 1, hold_last: int = 0) -> float:
    """Learning rate for an epoch: linear warm-up, then cosine decay to 2% of base. With ``hold_last``
    the last epochs keep the rate the schedule had reached when they began (the constant rate of
    stochastic weight averaging, whose epochs should explore, not settle)."""
    if hold_last > 0:
        epoch = min(epoch, epochs - hold_last)
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    t = (epoch - warmup) / max(1, epochs - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


class _EpochEnd(keras.callbacks.Callback):
    """Validation in inference mode, checkpoint, history, curve, early stopping: once per epoch."""

    def __init__(self, trainer: Trainer):
        super().__init__()
        self.t = trainer

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.t.lr_for(epoch))
        self.t.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.t.end_epoch(epoch, logs or {})
        if self.t.should_stop:
            self.model.stop_training = True


class _BatchProgress(keras.callbacks.Callback):
    def __init__(self, progress: Callable[[str, dict[str, Any]], None]):
        super().__init__()
        self.progress = progress

    def on_train_batch_end(self, batch, logs=None):
        self.progress("batch", {"step": batch + 1, "loss": float((logs or {}).get("loss", math.nan))})


class Trainer:
    def __init__(self, options: TrainOptions, *, resume: bool = False,
                 progress: Callable[[str, dict[str, Any]], None] | None = None):
        self.options = options
        # The run folder (read on --resume by every worker) and where this process writes: the same,
        # except on a multi-worker job's non-chief workers, which write a private temporary folder.
        self.run_dir = Path(options.out)
        self.out = self.run_dir
        self.role = None
        self.replicas = 1
        self.resume = resume
        self.progress = progress or (lambda event, info: None)
        self.history: list[dict[str, float]] = []
        self.best_iou = -1.0
        self.best_epoch = -1
        self.wait = 0
        self.should_stop = False
        self.epoch_started = 0.0
        self.images_per_second: list[float] = []
        # Stochastic weight averaging (average_last > 0): the running mean of the weights at the end
        # of each epoch of the window, and how many epochs it holds.
        self.average: list[np.ndarray] | None = None
        self.average_count = 0
        self.averaged: dict[str, Any] | None = None

    def lr_for(self, epoch: int) -> float:
        """The epoch's rate: --lr times the replicas (linear scaling: the global batch grows with them)."""
        o = self.options
        return cosine_lr(o.lr * self.replicas, epoch, o.epochs, hold_last=o.average_last)

    @property
    def average_start(self) -> int:
        """The first epoch (0-based) of the averaging window; past the end when there is none."""
        o = self.options
        return o.epochs - o.average_last if o.average_last else o.epochs

    # Where the work happens -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        o = self.options
        self.role = cluster_role() if o.strategy in ("auto", "multiworker") else None
        if self.role is not None and not self.role.is_chief:
            self.out = Path(tempfile.mkdtemp(prefix=f"hairseg-{self.role.task_type}{self.role.index}-"))
        try:
            return self._run()
        except Exception as exc:
            if self.role is not None and is_peer_failure(exc):
                raise PeerLostError(f"a peer worker was lost ({reason(exc)}); the last completed epoch is "
                                   f"saved in {self.run_dir}: restart every worker with --resume") from None
            raise
        finally:
            self._remove_private_out()

    def _remove_private_out(self) -> None:
        if self.out != self.run_dir:
            shutil.rmtree(self.out, ignore_errors=True)

    def _run(self) -> TrainResult:
        o = self.options
        self._prepare_out()
        splits = load_splits(o.data, o.limit, o.val_fraction)
        self.splits = splits
        train_samples, weights = [], []
        for k, ds in enumerate(splits.train):
            w = 1 if o.data_weights is None else int(o.data_weights[k])
            train_samples.extend(ds.samples)
            weights.extend([w] * len(ds))
        self.n_train = int(sum(weights))
        # First thing that touches TensorFlow's context: a collective strategy cannot come later.
        strategy = select_strategy(o.strategy)
        keras.utils.set_random_seed(o.seed)
        if use_mixed_precision(o.mixed_precision):
            keras.mixed_precision.set_global_policy("mixed_float16")
        replicas = strategy.num_replicas_in_sync
        self.replicas = replicas
        global_batch = o.batch * replicas
        self.global_batch = global_batch
        steps = steps_per_epoch(self.n_train, global_batch)
        if o.steps_per_epoch:
            steps = min(steps, o.steps_per_epoch)
        self.steps = steps

        state = read_state(self.run_dir) if self.resume else None
        initial_epoch = 0
        with strategy.scope():
            if state is not None:
                ckpt = self.run_dir / str(state.get("checkpoint", ""))
                model = load_checkpoint(ckpt)
                initial_epoch = int(state["epoch"]) + 1
                self.history = state.get("history", [])
                self.best_iou = float(state.get("best_val_iou", -1.0))
                self.best_epoch = int(state.get("best_epoch", -1))
                self.wait = int(state.get("wait", 0))
                self._load_average(state)
            else:
                model = archs.build_model(o.arch, o.img_size, o.width)
                if o.init_from:
                    init_weights_from(model, o.init_from)
                optimizer = keras.optimizers.AdamW(learning_rate=o.lr, weight_decay=o.weight_decay)
                model.compile(optimizer=optimizer, loss=make_loss(o.loss, o.dice_weight))
            if o.teacher:
                distil_into(model, load_teacher(o.teacher, o.img_size), o.distill_weight)
        self.model = model
        self.params = int(model.count_params())
        self.macs = archs.count_macs(model)  # per image: only spatial sizes count, not the batch

        self.val_sets = [make_dataset(v.samples, o.img_size, o.batch, training=False)
                         for v in splits.val]
        if state is not None and (initial_epoch >= o.epochs or state.get("stopped_early")):
            if self.average_count and not self.averaged:  # killed while finishing the average
                self._finish_average()
                self._save_state(initial_epoch - 1, finished=True)
            self.progress("already_done", {"epoch": initial_epoch})
            return self._result(stopped_early=bool(state.get("stopped_early")))

        preset = AUGMENT_PRESETS[o.augment]
        train_ds = make_dataset(train_samples, o.img_size, o.batch * replicas, training=True, seed=o.seed,
                                augment_options=preset, augmented=preset is not None,
                                repeat_weights=weights, initial_epoch=initial_epoch,
                                shard=self.role and (self.role.workers, self.role.pipeline_index),
                                targets=o.targets)
        self.progress("start", {"epochs": o.epochs, "initial_epoch": initial_epoch, "steps": steps,
                                "train_images": self.n_train, "replicas": replicas,
                                "val_images": sum(len(v) for v in splits.val),
                                "params": self.params, "macs": self.macs})
        callbacks: list[keras.callbacks.Callback] = [_EpochEnd(self), _BatchProgress(self.progress)]
        forget_input_errors()
        try:
            model.fit(train_ds, epochs=o.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                      callbacks=callbacks, verbose=0)
        except Exception as exc:  # an unreadable file found mid-epoch: its one-line InputError
            reraise_input_error(exc)
            raise
        if self.average_count:
            self._finish_average()
        self._save_state(self.history[-1]["epoch"] - 1 if self.history else initial_epoch - 1,
                         finished=True)
        return self._result(stopped_early=self.should_stop)

    def _finish_average(self) -> None:
        """model.keras <- the averaged weights, validated like an epoch.

        The BatchNorm moving statistics are averaged with the rest, not re-measured on training batches
        for the averaged weights as in Izmailov et al. (2018): here the averaged epochs are a fine-tune
        at a low rate, close together, and re-measuring on 100 batches lost 0.1-0.4 point on every
        validation set (default-v9: 0.8890 / 0.8937 / 0.7682 vs 0.8900 / 0.8950 / 0.7723, benchmarks/README).
        """
        o = self.options
        model = inference_copy(self.model, o, self.average)
        last = int(self.history[-1]["epoch"])
        averaged: dict[str, Any] = {"first_epoch": last - self.average_count + 1, "last_epoch": last,
                                    "epochs": self.average_count, **self._validate(model)}
        save_keras_atomic(model, self.out / MODEL_FILE)
        self.averaged = averaged
        self.progress("averaged", averaged)

    def _validate(self, model: keras.Model) -> dict[str, float]:
        """IoU and F1 of ``model`` on each data set's validation split, and ``val_iou``, their mean IoU."""
        scores: dict[str, float] = {}
        ious = []
        for name, ds in zip(self.splits.names, self.val_sets):
            metrics = evaluate_keras(model, ds)
            scores[f"val_iou_{name}"] = metrics["iou"]
            scores[f"val_f1_{name}"] = metrics["f1"]
            ious.append(metrics["iou"])
        # Mean over data sets: each keeps its own split and none dominates by size.
        scores["val_iou"] = float(np.mean(ious))
        return scores

    def end_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        o = self.options
        seconds = time.perf_counter() - self.epoch_started
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(logs.get("loss", math.nan)),
                               "lr": float(self.lr_for(epoch)), "seconds": round(seconds, 2),
                               "images_per_s": round(self.steps * self.global_batch / max(seconds, 1e-9), 2)}
        self.images_per_second.append(row["images_per_s"])
        row.update(self._validate(self.model))
        self.history.append(row)
        if epoch >= self.average_start:
            current = self.model.get_weights()
            if self.average_count == 0:
                self.average = [np.array(w, dtype=np.float64) for w in current]
            else:
                for mean, w in zip(self.average, current):
                    mean += (w - mean) / (self.average_count + 1)
            self.average_count += 1
        improved = row["val_iou"] > self.best_iou
        # keep="last": the end of the schedule, not a pick among epochs by validation scores, for a
        # fine-tuning phase whose low final learning rate settles the weights (and whose data sets
        # trade places from epoch to epoch, so the best mean can sit at an arbitrary epoch).
        if improved or o.keep == "last":
            save_keras_atomic(inference_copy(self.model, o), self.out / MODEL_FILE)
        if improved:
            self.best_iou, self.best_epoch, self.wait = row["val_iou"], epoch + 1, 0
        else:
            self.wait += 1
            if self.wait >= o.patience:
                self.should_stop = True
        self._save_state(epoch, finished=False)
        self.progress("epoch", {**row, "best_val_iou": self.best_iou, "improved": improved})

    # Files ------------------------------------------------------------------------------------------
    def _prepare_out(self) -> None:
        o = self.options
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder ({exc.strerror or exc})", self.out) from None
        if not os.access(self.out, os.W_OK):
            raise InputError("output folder is not writable", self.out)
        opts_path = self.out / "train_options.json"
        saved: dict[str, Any] = {}  # the options of the run being resumed past its first epoch
        if self.out != self.run_dir:  # a non-chief worker: the chief owns the run folder
            self._check_run_folder_as_worker()
            return
        if self.resume:
            # A run killed before its first epoch was saved has its options but no state: --resume
            # starts it again from epoch 0 in its own folder (a fresh run would refuse the folder).
            if read_state(self.out) is None and not opts_path.exists():
                raise InputError("nothing to resume: no state.json in the run folder", self.out)
            if opts_path.exists():
                saved = json.loads(opts_path.read_text(encoding="utf-8"))
                for key in ("arch", "img_size", "width"):
                    if saved.get(key) != getattr(o, key):
                        raise InputError(f"cannot resume with a different --{key.replace('_', '-')} "
                                         f"({saved.get(key)} in the run, {getattr(o, key)} now)", opts_path)
            state = read_state(self.out)
            if state is not None:
                self._average_window_moved(state)  # refuses before the options file is rewritten
            else:
                saved = {}  # no epoch saved: the run starts again from --init-from as it is now
        elif (self.out / STATE_FILE).exists() or (self.out / MODEL_FILE).exists():
            raise InputError("already holds a training run (use --resume to continue it, or another --out)",
                             self.out)
        record = o.to_dict()
        # The exact files a fine-tune started from and distilled from: a path such as the bundled model's
        # may later hold another model, and the run's lineage must not be read through it (the ship script
        # checks these digests). A resume keeps the digests of the files the run really started from.
        for key in ("init_from", "teacher"):
            if record.get(key):
                same = saved.get(key) == record[key] and saved.get(f"{key}_sha256")
                record[f"{key}_sha256"] = saved[f"{key}_sha256"] if same else file_sha256(record[key])
        write_text(opts_path, json.dumps(record, indent=1), force=True)

    def _check_run_folder_as_worker(self) -> None:
        """A non-chief worker refuses what the chief will refuse (when it sees the run folder), so it
        does not wait for a chief that has already stopped."""
        has_state = (self.run_dir / STATE_FILE).exists()
        if self.resume and not has_state and not (self.run_dir / "train_options.json").exists():
            raise InputError("nothing to resume: no state.json in the run folder (--out must be the "
                             "chief's run folder, on storage every worker reads)", self.run_dir)
        if not self.resume and (has_state or (self.run_dir / MODEL_FILE).exists()):
            raise InputError("already holds a training run (use --resume to continue it, or another --out)",
                             self.run_dir)

    def _save_state(self, epoch: int, *, finished: bool) -> None:
        name = f"checkpoint-epoch-{epoch + 1:04d}.keras"
        if not finished:
            save_keras_atomic(self.model, self.out / name)
        old = read_state(self.out)
        kept_epoch, kept_iou = self._kept()
        average_file = (old or {}).get("average_file")
        if self.average_count and not finished:
            average_file = f"average-epoch-{epoch + 1:04d}.npz"
            with atomic_path(self.out / average_file, force=True) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, *self.average)
        state = {"epoch": epoch, "checkpoint": name if not finished else (old or {}).get("checkpoint", name),
                 "best_val_iou": self.best_iou, "best_epoch": self.best_epoch, "wait": self.wait,
                 "kept_epoch": kept_epoch, "kept_val_iou": kept_iou,
                 "average_file": average_file, "average_count": self.average_count,
                 "averaged": self.averaged,
                 "finished": finished, "stopped_early": self.should_stop, "history": self.history}
        # The state file names the checkpoint (and running average) it belongs to and is written after
        # them: a kill between the two leaves the previous, consistent set.
        write_text(self.out / STATE_FILE, json.dumps(state, indent=1), force=True)
        for key in ("checkpoint", "average_file"):
            if old and old.get(key) not in (None, state[key]):
                (self.out / old[key]).unlink(missing_ok=True)
        write_history(self.out, self.history)
        if self.history:
            plot_history(self.history, self.out / "training_curve.png")

    def _load_average(self, state: dict[str, Any]) -> None:
        """On resume: the running average the state names (its epochs, so far, of the window)."""
        count, name = int(state.get("average_count") or 0), state.get("average_file")
        if not count or not name:
            return
        if self._average_window_moved(state):
            return  # the new window lies wholly ahead (a longer run): a fresh average starts there
        path = self.run_dir / str(name)
        try:
            with np.load(path) as saved:
                self.average = [saved[f"arr_{k}"] for k in range(len(saved.files))]
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot resume: unreadable weight average ({reason(exc)})", path) from None
        self.average_count = count
        self.averaged = state.get("averaged")

    def _average_window_moved(self, state: dict[str, Any]) -> bool:
        """Whether this run's averaging window starts after the saved average's epochs (True: drop
        it); an InputError when it would mix epochs from before and after the change."""
        count = int(state.get("average_count") or 0)
        first = int(state["epoch"]) + 1 - count  # the 0-based epoch the saved average began with
        if not count or first == self.average_start:
            return False
        if self.average_start > int(state["epoch"]):
            return True
        raise InputError(f"cannot resume: --epochs/--average-last move the averaging window, which began "
                         f"at epoch {first + 1} in this run", self.out / STATE_FILE)

    def _kept(self) -> tuple[int, float]:
        """The epoch ``model.keras`` holds and its mean validation IoU (follows from ``keep``; with an
        average, its last epoch and the average's own score)."""
        if self.averaged:
            return int(self.averaged["last_epoch"]), float(self.averaged["val_iou"])
        if self.options.keep == "last" and self.history:
            return int(self.history[-1]["epoch"]), float(self.history[-1]["val_iou"])
        return self.best_epoch, self.best_iou

    def _result(self, stopped_early: bool) -> TrainResult:
        kept_epoch, kept_iou = self._kept()
        return TrainResult(out=self.run_dir, model_path=self.run_dir / MODEL_FILE,
                           epochs_run=len(self.history), best_epoch=self.best_epoch,
                           best_val_iou=self.best_iou, kept_epoch=kept_epoch,
                           kept_val_iou=kept_iou, averaged=self.averaged, history=self.history, params=self.params,
                           macs=self.macs, stopped_early=stopped_early,
                           # this invocation's epochs, or the run's (a resume of a finished run)
                           images_per_second=float(np.median(self.images_per_second or [
                               r.get("images_per_s", 0.0) for r in self.history] or [0.0])))


def train(options: TrainOptions, *, resume: bool = False,
          progress: Callable[[str, dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a model as ``options`` say; ``resume=True`` continues the run in ``options.out``."""
    return Trainer(options, resume=resume, progress=progress).run()
