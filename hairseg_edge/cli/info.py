"""``hairseg-edge info``: what is inside a .tflite model (tensors, quantization, ops, metadata, GPU fit)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import MODEL_HELP, chosen_model, console, reports_errors

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


def _tier_text(tier: dict) -> str:
    """``large (--model large): fused_unet_ctx ...; card int8 IoU CelebAMask-HQ 0.9 ...; also: default``."""
    names = tier["name"] + (f" (alias {', '.join(tier['aliases'])})" if tier["aliases"] else "")
    text = f"{names}, --model {tier['name']}: {tier['summary']}"
    if tier["card_iou"]:
        scores = ", ".join(f"{name} {iou:.4f}" for name, iou in tier["card_iou"].items() if name != "mean")
        text += f"; model card int8 IoU (validation): {scores}"
    if tier["other_tiers"]:
        text += f"; other tiers here: {', '.join(tier['other_tiers'])} (bench --pick chooses by time budget)"
    return text


def _print(info: ModelInfo) -> None:
    from rich.markup import escape

    from hairseg_edge.cli._tables import Column, print_table

    summary: list[list[str]] = []
    summary.append(["size", f"{info.size_bytes:,} bytes ({info.size_bytes / 1e6:.2f} MB)"])
    if info.description:
        summary.append(["description", info.description])
    summary.append(["operators", f"{info.op_count} in {info.subgraphs} subgraph(s)"])
    summary.append(["parameters", _count(info.parameters)])
    summary.append(["MACs (conv/dense)", _count(info.macs)])
    adapter = f"[green]{info.adapter}[/]" if info.adapter else "[red]none[/]"
    summary.append(["adapter", f"{adapter}: {info.adapter_reason}"])
    if info.contract is not None:
        contract = ", ".join(f"{k}={v}" for k, v in sorted(info.contract.items()))
        if info.contract_error:
            contract += f" [red]({info.contract_error})[/]"
        summary.append(["hairseg contract", contract])
    else:
        summary.append(["hairseg contract", "none in metadata"])
    mp = "present" if info.mediapipe_metadata else "absent"
    if info.associated_files:
        mp += f" (associated files: {', '.join(info.associated_files)})"
    summary.append(["MediaPipe metadata", mp])
    if info.loads:
        summary.append(["loads", f"[green]yes[/] ({info.backend})"])
    else:
        summary.append(["loads", f"[red]no[/]: {info.load_error}"])
    if info.gpu is not None:
        verdict = "[green]compatible[/]" if info.gpu.compatible else \
            f"[yellow]{len(info.gpu.issues)} op(s) would fall back to the CPU[/]"
        summary.append(["GPU delegate", f"{verdict} ({info.gpu.note})"])
    if info.tier is not None:
        summary.append(["bundled tier", _tier_text(info.tier)])
    if info.loads:
        summary.append(["region stage", "run/eval --roi auto (default): a first pass on the whole frame finds "
                        "the head(s), a second segments a full-resolution crop of each (and its mirror "
                        "image, averaged); face-filling photos keep one pass; --roi off for the single pass"])
        summary.append(["face detector", _face_detector_text(info.face_detector)])
    print_table(console, [Column("", numeric=False, key=True, style="bold"), Column("", numeric=False, wrap_at=None)],
                summary, title=escape(str(info.path)), show_header=False, box=None, pad_edge=False)

    tensors = [[role, spec.name, str(list(spec.shape)), spec.dtype, _quant_text(spec)]
               for role, specs in (("input", info.inputs), ("output", info.outputs)) for spec in specs]
    print_table(console, [Column("", numeric=False, key=True), Column("name", numeric=False),
                          Column("shape"), Column("dtype", numeric=False),
                          Column("quantization", numeric=False)], tensors, title="Tensors")

    print_table(console, [Column("op", numeric=False, key=True), Column("count")],
                [[name, str(count)] for name, count in info.ops.items()], title="Operators")

    if info.metadata:
        print_table(console, [Column("name", numeric=False, key=True), Column("bytes")],
                    [[name, f"{size:,}"] for name, size in info.metadata.items()],
                    title="Metadata entries")

    if info.gpu is not None and info.gpu.issues:
        print_table(console, [Column("op #", key=True), Column("op", numeric=False),
                              Column("reason", numeric=False)],
                    [[str(issue.op_index), issue.op, issue.reason] for issue in info.gpu.issues],
                    title="GPU delegate issues")


def _face_detector_text(face: dict | None) -> str:
    """The region stage's fallback locator: used when the first pass finds no hair."""
    from rich.markup import escape

    if face is None:
        return "none"
    if not face["present"]:
        return (f"[yellow]not in this install[/] ({escape(face['path'])} is missing): the region stage "
                "runs without its fallback; --face-detector PATH gives one")
    return (f"{face['name']}, {face['bytes']:,} bytes: locates the head(s) when the first pass finds no "
            f"hair (--face-detector off: never); {escape(face['path'])}")


@reports_errors
def info_command(
    model: Annotated[Optional[str], typer.Argument(
        help="The .tflite model to describe, or a bundled tier (default: the bundled int8 model).",
        show_default=False)] = None,
    model_option: Annotated[Optional[str], typer.Option(
        "--model", "-m", help=MODEL_HELP, show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    gpu: Annotated[bool, typer.Option(
        "--gpu/--no-gpu", help="Check LiteRT GPU delegate compatibility.")] = True,
) -> None:
    """Show a model's inputs and outputs (shapes, dtypes, quantization), operators, size,
    metadata (hairseg contract, MediaPipe metadata), the adapter that runs it, whether the
    LiteRT GPU delegate can take all of its operators, and how run/eval apply it (the region stage,
    --roi auto: find the head on the whole frame, then segment a full-resolution crop of it)."""
    from hairseg_edge.inspect import inspect_model

    info = inspect_model(chosen_model(model, model_option), check_gpu=gpu)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
    else:
        _print(info)
