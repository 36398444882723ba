"""``hairseg-edge train``: fit a hair-segmentation model (needs the [train] extra)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Annotated, Any, Optional

import typer

from hairseg_edge.errors import InputError, MissingExtraError

from ._common import bounded, console, reports_errors


def require_train_extra(what: str) -> None:
    """Fail with one line when TensorFlow / tf-keras are missing (a core-only install)."""
    for module in ("tensorflow", "tf_keras"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            found = False
        if not found:
            raise MissingExtraError("train", what)


def _parse_weights(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if not text:
        return None
    try:
        weights = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise InputError(f"--data-weights must be integers separated by commas, got {text!r}") from None
    if any(w < 1 for w in weights):
        raise InputError("--data-weights must all be >= 1")
    return weights


@reports_errors
def train(
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", help="Data set folder (folder format or CelebAMask-HQ layout), local or on any storage "
        "TensorFlow reads (gs://..., hdfs://...); repeat for a union.")] = None,
    arch: Annotated[str, typer.Option(help="Architecture from the registry (see --list-archs).")] = "fused_unet",
    img_size: Annotated[int, typer.Option("--img-size", help="Square model input side, a multiple of 32.",
        callback=bounded(32, 4096))] = 160,
    width: Annotated[Optional[float], typer.Option(help="Width multiplier (default: the architecture's).",
        callback=bounded(0.05, 4.0))] = None,
    epochs: Annotated[int, typer.Option(help="Total epochs to reach (also with --resume).",
        callback=bounded(1, 100_000))] = 30,
    batch: Annotated[int, typer.Option(help="Batch size per replica.", callback=bounded(1, 4096))] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Read at most N images from each --data folder.",
        callback=bounded(1))] = None,
    out: Annotated[str, typer.Option(help="Run folder: model.keras, checkpoints, history, curve (a local "
        "or mounted folder).")] = "runs/hairseg",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine decay).",
        callback=bounded(1e-9, 10.0))] = 3e-3,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without a better val IoU.",
        callback=bounded(0, 100_000))] = 8,
    seed: Annotated[int, typer.Option(help="Random seed (shuffling, augmentation, initial weights).",
        callback=bounded(0, 2**32 - 1))] = 1234,
    data_weights: Annotated[Optional[str], typer.Option(
        "--data-weights", help="Oversampling per --data folder, e.g. 1,3,1.")] = None,
    strategy: Annotated[str, typer.Option(
        help="auto (TF_CONFIG -> multiworker, >1 GPU -> mirrored) | default | mirrored | multiworker.")] = "auto",
    mixed_precision: Annotated[str, typer.Option(
        "--mixed-precision", help="auto (on with a GPU) | on | off.")] = "auto",
    steps_per_epoch: Annotated[Optional[int], typer.Option(
        "--steps-per-epoch", help="Cap the steps per epoch (quick trials).",
        callback=bounded(1))] = None,
    init_from: Annotated[Optional[str], typer.Option(
        "--init-from", help="Start from this .keras model's weights (same --arch and --width; any "
        "--img-size): fine-tune. A tier name (default, large) = its bundled float model.")] = None,
    augment: Annotated[str, typer.Option(
        help="Augmentation strength: full (photos in the wild) | light (a last fine-tuning phase) | "
        "wide (light, plus heads small in the frame) | crops (light, plus photos shrunk and enlarged "
        "back: what the region stage feeds the model for a small head) | "
        "settle (mirroring only: a final phase on the photos as the contract prepares them) | none.")
    ] = "full",
    keep: Annotated[str, typer.Option(
        help="Which epoch OUT/model.keras holds: best (mean validation IoU over the data sets) | last.")
    ] = "best",
    average_last: Annotated[int, typer.Option(
        "--average-last", help="Stochastic weight averaging: hold the learning rate over the last N epochs "
        "and make OUT/model.keras the average of their weights. 0 = off.",
        callback=bounded(0, 100_000))] = 0,
    teacher: Annotated[Optional[str], typer.Option(
        "--teacher", help="Distil from this trained .keras hair model: the targets become a mix of the masks "
        "and its probability (averaged over each image and its mirror image). A tier name (default, "
        "large) = its bundled float model.")] = None,
    distill_weight: Annotated[float, typer.Option(
        "--distill-weight", help="With --teacher: target = (1 - w) * mask + w * teacher.",
        callback=bounded(0.0, 1.0))] = 0.5,
    loss: Annotated[str, typer.Option(
        hidden=True, help="A loss registered in training.losses.LOSSES (studies register their own).")
    ] = "bce_dice",
    targets: Annotated[str, typer.Option(
        hidden=True, help="A target mode registered in training.pipeline.TARGET_MODES.")] = "nearest",
    list_archs: Annotated[bool, typer.Option(
        "--list-archs", help="List architectures with parameters and MACs at --img-size, then exit.")] = False,
) -> None:
    """Train a hair-segmentation model; writes OUT/model.keras, history.csv/json and training_curve.png."""
    require_train_extra("hairseg-edge train")
    if list_archs:
        _print_archs(img_size)
        return
    if not data:
        raise InputError("give at least one --data folder (or --list-archs)")
    from hairseg_edge.training.train import TrainOptions
    from hairseg_edge.training.train import train as run_training

    options = TrainOptions(
        data=tuple(str(d) for d in data), out=str(out), arch=arch, img_size=img_size, width=width,
        epochs=epochs, batch=batch, limit=limit, lr=lr, patience=patience, seed=seed,
        data_weights=_parse_weights(data_weights), strategy=strategy, mixed_precision=mixed_precision,
        steps_per_epoch=steps_per_epoch, init_from=bundled_or_path(init_from), augment=augment,
        keep=keep, average_last=average_last, teacher=bundled_or_path(teacher), distill_weight=distill_weight,
        loss=loss, targets=targets)
    from hairseg_edge.training.distribute import PeerLostError

    try:
        with _TrainProgress() as progress:
            result = run_training(options, resume=resume, progress=progress)
    except PeerLostError as err:
        # With a peer gone, TensorFlow's collective runtime and the helper threads and pools around it
        # are broken: the interpreter's teardown can hang on them or print their tracebacks (seen:
        # multiprocessing's Pool.__del__ writing to a closed pipe). The checkpoint is saved; say the one
        # line and leave at once.
        print(f"hairseg-edge: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(err.exit_code)
    console.print(
        f"[bold]done[/]: {result.epochs_run} epochs, best val IoU {result.best_val_iou:.4f} at epoch "
        f"{result.best_epoch}, {result.images_per_second:.1f} images/s"
        + (" (stopped early)" if result.stopped_early else ""))
    if result.averaged:
        a = result.averaged
        console.print(f"model.keras holds the average of epochs {a['first_epoch']}-{a['last_epoch']} "
                      f"(val IoU {a['val_iou']:.4f})")
    elif result.kept_epoch != result.best_epoch:
        console.print(f"model.keras holds the last epoch, {result.kept_epoch} (val IoU {result.kept_val_iou:.4f})")
    console.print(f"model: {result.model_path}")
    console.print(f"next: hairseg-edge export {result.model_path} --int8 --data {data[0]}")


def bundled_or_path(model: Optional[str]) -> Optional[str]:
    """A bundled tier's name (``default``, ``fast``, ``large``) names its float model (the one resolver,
    :func:`hairseg_edge.models.resolve_model`); anything else is a path, kept as given."""
    from hairseg_edge.models import find_tier, resolve_model

    if model is None or find_tier(model) is None:
        return model
    return str(resolve_model(model, "float"))


def _print_archs(img_size: int) -> None:
    from hairseg_edge.cli._tables import Column, print_table
    from hairseg_edge.training.archs import describe_archs

    rows = [[row["arch"], f"{row['width']:g}", f"{row['params']:,}", f"{row['macs'] / 1e6:,.1f} M",
             row["summary"]] for row in describe_archs(img_size)]
    print_table(console, [Column("arch", numeric=False, key=True), Column("width"), Column("params"),
                          Column("MACs"), Column("what", numeric=False, wrap_at=None)], rows,
                title=f"architectures at {img_size}x{img_size}")


def _per_set(info: dict[str, Any]) -> str:
    """``name IoU`` for each data set's validation score in an epoch's (or the average's) info."""
    prefix = "val_iou_"
    return "  ".join(f"{k[len(prefix):]} {v:.4f}" for k, v in info.items() if k.startswith(prefix))


class _TrainProgress:
    """Rich progress: one bar for epochs, one for the steps of the current epoch, a line per epoch."""

    def __enter__(self) -> _TrainProgress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                                 transient=False)
        self.progress.__enter__()
        self.epoch_task = None
        self.step_task = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        p = self.progress
        if event == "start":
            p.console.print(
                f"training on {info['train_images']} images/epoch, validating on {info['val_images']}, "
                f"{info['params']:,} params, {info['macs'] / 1e6:.1f} M MACs, {info['replicas']} replica(s)")
            self.epoch_task = p.add_task("epochs", total=info["epochs"], completed=info["initial_epoch"],
                                         info="")
            self.step_task = p.add_task("steps", total=info["steps"], info="")
        elif event == "batch" and self.step_task is not None:
            p.update(self.step_task, completed=info["step"], info=f"loss {info['loss']:.4f}")
        elif event == "epoch" and self.epoch_task is not None:
            p.console.print(
                f"epoch {info['epoch']}: loss {info['loss']:.4f}  val IoU {info['val_iou']:.4f} "
                f"({_per_set(info)})  "
                f"{info['images_per_s']:.1f} img/s" + ("  [green]best[/]" if info["improved"] else ""))
            p.update(self.epoch_task, completed=info["epoch"], info=f"best {info['best_val_iou']:.4f}")
            p.reset(self.step_task)
        elif event == "averaged":
            p.console.print(f"average of epochs {info['first_epoch']}-{info['last_epoch']}: "
                            f"val IoU {info['val_iou']:.4f} ({_per_set(info)})")
        elif event == "already_done":
            p.console.print(f"run already complete at epoch {info['epoch']}; nothing to do")


def register(app: typer.Typer) -> None:
    app.command(name="train")(train)
