"""``hairseg-edge eval``: score a model on a data set, optionally gated against a reference model."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import (
    FACE_DETECTOR_HELP, MAX_PEOPLE_HELP, MODEL_HELP, ROI_HELP, bounded,
    chosen_model, console, err_console, face_detector_option, reports_errors,
)
from hairseg_edge.runtime import MAX_THREADS

if TYPE_CHECKING:
    from rich.console import Console

    from hairseg_edge.evaluate import EvalResult


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)


_METRIC_ROWS = (
    ("IoU (global)", "iou"),
    ("mean IoU (per image)", "mean_iou"),
    ("F1 / Dice", "f1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("pixel accuracy", "accuracy"),
    ("boundary F", "boundary_f"),
)


def _print_table(result: EvalResult, console: Console, split_reason: str = "") -> None:
    from hairseg_edge.cli._tables import Column, print_table, short_labels

    ref = result.reference
    models = [result.score] + ([ref] if ref is not None else [])
    labels, notes = short_labels([m.model for m in models], [m.adapter for m in models])
    split = f"{split_reason}, " if split_reason else ""
    title = f"eval: {split}{result.metrics.n} photos of {result.data} (ids {result.ids_hash})"
    columns = [Column("metric", numeric=False, key=True), Column(labels[0])]
    if ref is not None:
        columns.append(Column(f"ref {labels[1]}" if labels[1] != labels[0] else "reference"))
    rows = []
    for label, key in _METRIC_ROWS:
        rows.append([label] + [f"{getattr(m.metrics, key):.4f}" for m in models])
    timing = "p50 ms, both ROI stages" if models[0].roi == "auto" else "p50 invoke ms"
    rows.append([timing] + [f"{m.p50_ms:.2f}" for m in models])
    if ref is not None and result.agreement is not None:
        agree = result.agreement
        rows.append(["agreement IoU", f"{agree.iou:.4f}", ""])
        rows.append(["pixel agreement", f"{agree.pixel_agreement:.4f}", ""])
        if agree.max_prob_diff is not None:
            rows.append(["max probability diff", f"{agree.max_prob_diff:.4f}", ""])
        verdict = "[green]passed[/]" if result.passed else "[red]FAILED[/]"
        rows.append(["IoU drop (allowed)", f"{result.iou_drop:+.4f}", f"({result.max_drop:.4f}) {verdict}"])
    print_table(console, columns, rows, title=title, notes=notes)


@reports_errors
def eval_command(
    model: Annotated[Optional[str], typer.Argument(
        help="The .tflite model to score, or a bundled tier (default: the bundled int8 model).",
        show_default=False)] = None,
    model_option: Annotated[Optional[str], typer.Option(
        "--model", "-m", help=MODEL_HELP, show_default=False)] = None,
    data: Annotated[str, typer.Option(
        "--data", "-d", help="Data set folder (images/ + masks/, or the CelebAMask-HQ layout).",
        show_default=False)] = ...,  # type: ignore[assignment]
    limit: Annotated[Optional[int], typer.Option(
        "--limit", "-n", help="Score only the first N selected images.", show_default=False,
        callback=bounded(1))] = None,
    adapter: Annotated[Optional[str], typer.Option(
        "--adapter",
        help="How to feed the model: hairseg, mediapipe-hair, bisenetv2-celebamask or "
             "community-mobile (default: detected from the model's tensors).",
        show_default=False)] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Write the scores as JSON here.", show_default=False)] = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", help="Compare with this model (e.g. the float original); exit 1 when the IoU "
                            "falls more than --max-drop below it.", show_default=False)] = None,
    reference_adapter: Annotated[Optional[str], typer.Option(
        "--reference-adapter", help="Adapter of the reference model (default: detected).",
        show_default=False)] = None,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", help="Largest allowed IoU drop against --reference.",
        callback=bounded(0.0, 1.0))] = 0.005,
    split: Annotated[str, typer.Option(
        "--split", help="Which ids to score: all, val or train (the stable hash split). auto: val when "
                        "the bundled model is scored on a data set it trained on (its recorded "
                        "validation split), else all.")] = "auto",
    ids: Annotated[Optional[Path], typer.Option(
        "--ids", help="Score only the ids listed in this file (one per line).",
        show_default=False)] = None,
    threads: Annotated[int, typer.Option("--threads", "-t", help="Interpreter threads.",
        callback=bounded(1, MAX_THREADS))] = 1,
    flip_tta: Annotated[bool, typer.Option(
        "--flip-tta", help="Also run each image mirrored and average the two outputs, for the model "
                           "and the reference alike (test-time augmentation): a little more accurate, "
                           "twice the inference time.")] = False,
    roi: Annotated[str, typer.Option("--roi", help=ROI_HELP + " Applies to --reference too.")] = "auto",
    max_people: Annotated[Optional[int], typer.Option(
        "--max-people", help=MAX_PEOPLE_HELP, show_default=False, callback=bounded(1, 32))] = None,
    face_detector: Annotated[Optional[str], typer.Option(
        "--face-detector", help=FACE_DETECTOR_HELP + " Applies to --reference too.", show_default=False,
        callback=face_detector_option)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --json file.")] = False,
) -> None:
    """Score a model on a data set (global and mean IoU, F1, precision, recall, accuracy,
    boundary F, p50 invoke time), each image at its own resolution against its mask. With
    --reference both models see the same images, and the command exits 1 when the model's IoU is
    more than --max-drop below the reference's."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hairseg_edge.errors import InputError
    from hairseg_edge.evaluate import choose_split, evaluate, select_dataset
    from hairseg_edge.filesystem import local_path
    from hairseg_edge.imageio import write_text
    from hairseg_edge.runtime import Segmenter

    if json_path is not None and json_path.exists() and not force:
        raise InputError("already exists (pass --force to overwrite)", json_path)
    model_path = chosen_model(model, model_option)
    data = local_path(data)
    choice = choose_split(split, model_path, data, ids_given=ids is not None)
    if choice.warning:
        err_console.print(choice.warning, style="bold yellow", highlight=False, soft_wrap=True)
    dataset = select_dataset(data, split=choice.split, ids_file=ids, limit=limit)

    # Models are loaded before the progress bar starts, so a bad model prints just its one line.
    with contextlib.ExitStack() as stack:
        candidate = stack.enter_context(Segmenter(model_path, threads=threads, adapter=adapter,
                                                  flip_tta=flip_tta, roi=roi, max_people=max_people,
                                                  face_detector=face_detector))
        ref = None
        if reference is not None:
            ref = stack.enter_context(Segmenter(reference, threads=threads, adapter=reference_adapter,
                                                  flip_tta=flip_tta, roi=roi, max_people=max_people,
                                                  face_detector=face_detector))
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, redirect_stdout=False,
                            redirect_stderr=False)
        with progress:
            task = progress.add_task("eval", total=len(dataset))
            result = evaluate(candidate, dataset, threads=threads, reference=ref, max_drop=max_drop,
                              progress=lambda done, total: progress.update(task, completed=done))
    _print_table(result, console, choice.reason)
    if json_path is not None:
        write_text(json_path, json.dumps(result.to_dict(), indent=2) + "\n", force=force)
    result.check()
