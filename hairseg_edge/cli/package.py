"""``hairseg-edge package``: add the TFLite metadata MediaPipe Tasks needs (needs the [mobile] extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, reports_errors


def register(app: typer.Typer) -> None:
    app.command(name="package")(package)


@reports_errors
def package(
    model: Annotated[Path, typer.Argument(
        help="A hairseg .tflite model (float32, float16, dynamic-range or int8).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Where to write the packaged model (default: <model stem>.task-ready.tflite "
                            "next to the model).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Load the result in MediaPipe's ImageSegmenter and check it "
                                     "against LiteRT before writing it.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a model load as it is in MediaPipe Tasks' ImageSegmenter (Android, iOS, web, Python).

    Writes a copy with TFLite metadata: the input image description and normalisation, the output's
    label file (hair, background) and the segmenter options. The model's weights, graph and
    hairseg contract are unchanged, so LiteRT runs the copy exactly like the original.
    Needs the [mobile] extra: pip install "hairseg-edge[mobile]".
    """
    from hairseg_edge.mediapipe_meta import package_model

    result = package_model(model, out, force=force, verify=verify)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    io = result.io
    feed = ("float32, MediaPipe normalisation mean 0 / std 1 (raw 0..255)"
            if result.normalization is not None else "uint8, no normalisation (raw 0..255)")
    console.print(f"wrote {result.output} ({result.size_bytes:,} bytes)", highlight=False, soft_wrap=True)
    console.print(f"  input  {io.input_size}x{io.input_size} RGB, {feed}", highlight=False, soft_wrap=True)
    console.print(f"  output one channel, hair probability ({io.output.dtype}); labels: "
                  f"{', '.join(result.labels)}", highlight=False, soft_wrap=True)
    if result.verified:
        console.print(f"  verified in MediaPipe {result.mediapipe_version} ImageSegmenter: same "
                      f"probabilities as LiteRT (max difference {result.max_abs_diff:.2g})",
                      highlight=False, soft_wrap=True)
    else:
        console.print("  not verified (--no-verify)", highlight=False, soft_wrap=True)
