"""``hairseg-edge info``: what is inside a .tflite model (tensors, quantization, ops, metadata, GPU fit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import console, reports_errors

if TYPE_CHECKING:
    from hairseg_edge.adapters import TensorSpec
    from hairseg_edge.inspect import ModelInfo


def register(app: typer.Typer) -> None:
    app.command(name="info")(info_command)


def _quant_text(spec: TensorSpec) -> str:
    if spec.per_channel:
        return "per-channel"
    if not spec.quantized:
        return "-"
    return f"scale {spec.scale:.6g}, zero point {spec.zero_point}"


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _print(info: ModelInfo) -> None:
    from rich.table import Table

    summary = Table(title=f"{info.path}", title_justify="left", show_header=False, box=None,
                    pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("size", f"{info.size_bytes:,} bytes ({info.size_bytes / 1e6:.2f} MB)")
    if info.description:
        summary.add_row("description", info.description)
    summary.add_row("operators", f"{info.op_count} in {info.subgraphs} subgraph(s)")
    summary.add_row("parameters", _count(info.parameters))
    summary.add_row("MACs (conv/dense)", _count(info.macs))
    adapter = f"[green]{info.adapter}[/]" if info.adapter else "[red]none[/]"
    summary.add_row("adapter", f"{adapter}: {info.adapter_reason}")
    if info.contract is not None:
        contract = ", ".join(f"{k}={v}" for k, v in sorted(info.contract.items()))
        if info.contract_error:
            contract += f" [red]({info.contract_error})[/]"
        summary.add_row("hairseg contract", contract)
    else:
        summary.add_row("hairseg contract", "none in metadata")
    mp = "present" if info.mediapipe_metadata else "absent"
    if info.associated_files:
        mp += f" (associated files: {', '.join(info.associated_files)})"
    summary.add_row("MediaPipe metadata", mp)
    if info.loads:
        summary.add_row("loads", f"[green]yes[/] ({info.backend})")
    else:
        summary.add_row("loads", f"[red]no[/]: {info.load_error}")
    if info.gpu is not None:
        verdict = "[green]compatible[/]" if info.gpu.compatible else \
            f"[yellow]{len(info.gpu.issues)} op(s) would fall back to the CPU[/]"
        summary.add_row("GPU delegate", f"{verdict} ({info.gpu.note})")
    console.print(summary)

    tensors = Table(title="Tensors", title_justify="left")
    for column in ("", "name", "shape", "dtype", "quantization"):
        tensors.add_column(column)
    for role, specs in (("input", info.inputs), ("output", info.outputs)):
        for spec in specs:
            tensors.add_row(role, spec.name, str(list(spec.shape)), spec.dtype, _quant_text(spec))
    console.print(tensors)

    ops = Table(title="Operators", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for name, count in info.ops.items():
        ops.add_row(name, str(count))
    console.print(ops)

    if info.metadata:
        meta = Table(title="Metadata entries", title_justify="left")
        meta.add_column("name")
        meta.add_column("bytes", justify="right")
        for name, size in info.metadata.items():
            meta.add_row(name, f"{size:,}")
        console.print(meta)

    if info.gpu is not None and info.gpu.issues:
        gpu = Table(title="GPU delegate issues", title_justify="left")
        for column in ("op #", "op", "reason"):
            gpu.add_column(column)
        for issue in info.gpu.issues:
            gpu.add_row(str(issue.op_index), issue.op, issue.reason)
        console.print(gpu)


@reports_errors
def info_command(
    model: Annotated[Optional[Path], typer.Argument(
        help="The .tflite model to describe (default: the bundled int8 model).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    gpu: Annotated[bool, typer.Option(
        "--gpu/--no-gpu", help="Check LiteRT GPU delegate compatibility.")] = True,
) -> None:
    """Show a model's inputs and outputs (shapes, dtypes, quantization), operators, size,
    metadata (hairseg contract, MediaPipe metadata), the adapter that runs it, and whether the
    LiteRT GPU delegate can take all of its operators."""
    from hairseg_edge.inspect import inspect_model

    if model is None:
        from hairseg_edge.models import default_model_path

        model = default_model_path("int8")
    info = inspect_model(model, check_gpu=gpu)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
    else:
        _print(info)
