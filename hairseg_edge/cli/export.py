"""``hairseg-edge export``: prune / quantize a trained .keras model to .tflite and prove it (needs [train])."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Optional

import typer

from hairseg_edge.errors import MissingExtraError
from hairseg_edge.export.options import IOType  # plain Python: no TensorFlow behind it

from ._common import MODEL_HELP, bounded, chosen_model, console, err_console, reports_errors

#: Modules of the [train] extra that the export side imports.
TRAIN_MODULES = ("tensorflow", "tf_keras", "tensorflow_model_optimization")


def _require_train_extra() -> None:
    """MissingExtraError (one line, exit 2) when the [train] extra is not installed (cheap check)."""
    for module in TRAIN_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # blocked by an import hook, or a None entry in sys.modules
            found = False
        if not found:
            raise MissingExtraError("train", "hairseg-edge export")


def _import_export_api():
    """``hairseg_edge.export.api``; MissingExtraError when TensorFlow or tfmot fails to import."""
    try:
        from hairseg_edge.export import api
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in TRAIN_MODULES:
            raise MissingExtraError("train", "hairseg-edge export") from None
        raise
    return api


@reports_errors
def export(
    model: Annotated[Optional[str], typer.Argument(
        help="Float .keras model from `hairseg-edge train`, or a bundled tier's float original "
             "(default: the bundled float model).",
        show_default=False)] = None,
    model_option: Annotated[Optional[str], typer.Option(
        "--model", "-m", help=MODEL_HELP + " export takes the tier's float original.",
        show_default=False)] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Full-integer int8 (weights and activations).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="float16 weights.")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic range: int8 weights, float "
                                                            "activations.")] = False,
    float32: Annotated[bool, typer.Option("--float32", help="Plain float32.")] = False,
    prune: Annotated[Optional[float], typer.Option(
        help="Prune to this sparsity (e.g. 0.5) while fine-tuning on --data; every variant is built "
             "from the pruned model.", show_default=False, callback=bounded(0.0, 0.99))] = None,
    qat: Annotated[bool, typer.Option("--qat", help="Build int8 with quantization-aware training "
                                                    "(fine-tunes on --data).")] = False,
    data: Annotated[Optional[str], typer.Option(
        help="Data set: its training split fine-tunes and calibrates, its validation split verifies.",
        show_default=False)] = None,
    calib: Annotated[Optional[str], typer.Option(
        help="Calibration images for int8 (default: the training split of --data).",
        show_default=False)] = None,
    eval_data: Annotated[Optional[str], typer.Option(
        "--eval", help="Evaluation images (default: the validation split of --data). A folder of "
                       "images without masks: the gate checks agreement only.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(
        help="Read at most N images from each data set (fine-tuning, calibration, evaluation).",
        show_default=False, callback=bounded(1))] = None,
    calib_count: Annotated[int, typer.Option("--calib-count", help="Calibration images.",
        callback=bounded(1, 1_000_000))] = 200,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", help="Largest IoU drop against the float model that passes (0.005 = half a "
                           "point).", callback=bounded(0.0, 1.0))] = 0.005,
    min_agreement: Annotated[float, typer.Option(
        "--min-agreement", help="Smallest agreement IoU with the float model's masks that passes.",
        callback=bounded(0.0, 1.0))] = 0.97,
    io: Annotated[IOType, typer.Option(
        help="int8 model input/output type: uint8 takes camera frames as they are.")] = IOType.UINT8,
    out: Annotated[Path, typer.Option(help="Output folder (models, report.json, report.md).")] = Path(
        "export-out"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    finetune_epochs: Annotated[int, typer.Option(
        "--finetune-epochs", help="Fine-tune epochs for --prune / --qat.",
        callback=bounded(1, 10_000))] = 2,
    finetune_steps: Annotated[Optional[int], typer.Option(
        "--finetune-steps", help="Steps per fine-tune epoch (default: one pass over the training "
                                 "split).", show_default=False, callback=bounded(1))] = None,
    finetune_batch: Annotated[int, typer.Option("--finetune-batch", help="Fine-tune batch size.",
        callback=bounded(1, 4096))] = 8,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr", help="Fine-tune learning rate.",
        callback=bounded(1e-9, 1.0))] = 1e-4,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the "
                                                         "table.")] = False,
) -> None:
    """Convert a float model to .tflite (float32, float16, dynamic, int8; int8 when no variant is
    named), optionally pruned and/or quantization-aware trained, and verify every variant against the
    float original on the same images. A variant that misses the gate is not written (exit 1)."""
    _require_train_extra()
    from hairseg_edge.export.options import ExportOptions
    from hairseg_edge.filesystem import local_path

    variants = tuple(name for name, asked in (("float32", float32), ("float16", fp16),
                                              ("dynamic", dynamic), ("int8", int8)) if asked) or ("int8",)
    options = ExportOptions(
        model=chosen_model(model, model_option, kind="float"), variants=variants, prune=prune, qat=qat,
        data=local_path(data), calib=local_path(calib), eval_data=local_path(eval_data), limit=limit, calib_count=calib_count,
        max_drop=max_drop, min_agreement=min_agreement, io=io, out=out, force=force,
        finetune_epochs=finetune_epochs, finetune_steps=finetune_steps, finetune_batch=finetune_batch,
        finetune_lr=finetune_lr)
    from rich import box
    from rich.markup import escape

    api = _import_export_api()
    shown = err_console if as_json else console
    # Each stage's message stays as a line (soft_wrap: paths stay whole, so they can be copied) and a
    # spinner names the stage under way, so a 14 s conversion is not silence.
    with shown.status("starting the export", spinner="dots") as status:
        def progress(message: str) -> None:
            shown.print(message, style="dim", soft_wrap=True, markup=False, highlight=False)
            status.update(escape(message.rstrip(". ")) + " ...")

        report = api.export_model(options, progress=progress)
    if as_json:
        typer.echo(report.to_json(), nl=False)
    else:
        from hairseg_edge.cli._tables import Column, print_table

        title, headers, rows = report.terminal_table()
        columns = [Column(h, numeric=i >= 2, key=i == 0) for i, h in enumerate(headers)]
        print_table(console, columns, rows, title=title, box=box.SIMPLE_HEAD, pad_edge=False,
                    collapse_padding=True)
        console.print(f"gate: {report.gate.reason}", soft_wrap=True, markup=False)
        console.print(f"report: {options.report_json_path}, {options.report_md_path}", soft_wrap=True,
                      markup=False)
        written = [row.path for row in report.variants if row.path]
        if written:
            console.print(f"next: hairseg-edge bench {' '.join(written)}", soft_wrap=True, markup=False)
    report.raise_for_gate()


def register(app: typer.Typer) -> None:
    app.command(name="export")(export)
