"""``hairseg-edge run``: segment images, folders, globs, videos or a camera and write the results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import (
    FACE_DETECTOR_HELP, MAX_PEOPLE_HELP, MODEL_HELP, ROI_HELP, bounded,
    chosen_model, console, face_detector_option, reports_errors,
)
from hairseg_edge.runtime import MAX_THREADS

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from hairseg_edge.runner import ItemResult


def register(app: typer.Typer) -> None:
    app.command(name="run")(run_command)


class _RichObserver:
    """Renders runner events: a Rich progress bar per group, problems as one line on stderr."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: TaskID | None = None
        self.started = False

    def start(self, description: str, total: int | None) -> None:
        self.finish()
        if not self.started:  # shown only once there is work: an early error prints just its line
            self.progress.start()
            self.started = True
        self.task = self.progress.add_task(description, total=total)

    def stop(self) -> None:
        self.finish()
        if self.started:
            self.progress.stop()

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def finish(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.progress.task_ids.index(self.task)]
            if task.total is None:  # unknown length (camera): show what was done as complete
                self.progress.update(self.task, total=task.completed)
            self.task = None

    def problem(self, message: str) -> None:
        print(f"hairseg-edge: {message}", file=sys.stderr, flush=True)

    def video_done(self, item: ItemResult) -> None:
        pass  # summarised after the run, with the other inputs


def _describe_stream(item: ItemResult) -> str:
    fps = f"{item.fps:.1f} FPS" if item.fps else "n/a FPS"
    wall = f", {item.wall_fps:.1f} FPS with decode/encode" if item.wall_fps else ""
    flicker = (f", flicker: mean IoU of consecutive masks {item.flicker_iou:.4f}"
               if item.flicker_iou is not None else "")
    return f"{item.input}: {item.frames} frames, {fps} (segment + render){wall}{flicker}"


@reports_errors
def run_command(
    source: Annotated[str, typer.Argument(
        help="An image, a folder, a glob (quote it: 'photos/*.jpg'), a video file, or a camera "
             "index such as 0.", show_default=False)],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help=MODEL_HELP + " Default: the default tier.",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder, created when missing.")] = Path("hairseg-out"),
    overlay: Annotated[bool, typer.Option(
        "--overlay", help="Also write <stem>_overlay (hair tinted and outlined).")] = False,
    recolor: Annotated[Optional[str], typer.Option(
        "--recolor", help="Also write <stem>_recolor with the hair recoloured: a hair colour name "
                          "(auburn, blonde, copper, ...; see docs/recolor.md), #rrggbb or r,g,b.",
        show_default=False)] = None,
    recolor_strength: Annotated[float, typer.Option(
        "--recolor-strength", help="How far --recolor moves the hair's colour: 0 (unchanged) to 1 "
                                   "(full).", callback=bounded(0.0, 1.0))] = 1.0,
    soft: Annotated[bool, typer.Option(
        "--soft", help="Also write <stem>_matte.png, a guided-filter soft matte (0..255), and "
                       "use it for overlay/recolour edges.")] = False,
    show: Annotated[bool, typer.Option(
        "--show", help="Show results in a window (needs OpenCV with GUI: opencv-python).")] = False,
    hud: Annotated[bool, typer.Option(
        "--hud", help="Videos and cameras: draw the processing FPS on the overlay/recolour "
                      "frames.")] = False,
    threads: Annotated[int, typer.Option("--threads", "-t", help="Interpreter threads.",
        callback=bounded(1, MAX_THREADS))] = 1,
    flip_tta: Annotated[bool, typer.Option(
        "--flip-tta", help="Also run each frame mirrored and average the two outputs (test-time "
                           "augmentation): a little more accurate, twice the inference time.")] = False,
    roi: Annotated[str, typer.Option("--roi", help=ROI_HELP)] = "auto",
    max_people: Annotated[Optional[int], typer.Option(
        "--max-people", help=MAX_PEOPLE_HELP, show_default=False, callback=bounded(1, 32))] = None,
    face_detector: Annotated[Optional[str], typer.Option(
        "--face-detector", help=FACE_DETECTOR_HELP, show_default=False,
        callback=face_detector_option)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    adapter: Annotated[Optional[str], typer.Option(
        "--adapter",
        help="How to feed the model: hairseg, mediapipe-hair, bisenetv2-celebamask or "
             "community-mobile (default: detected from the model's tensors).",
        show_default=False)] = None,
    smooth: Annotated[bool, typer.Option(
        "--smooth/--no-smooth", help="Temporal smoothing of video masks.")] = True,
    frames: Annotated[Optional[int], typer.Option(
        "--frames", help="Stop a video or camera after this many frames.", show_default=False,
        callback=bounded(1))] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Write a JSON summary of the run here.", show_default=False)] = None,
) -> None:
    """Segment hair in images, folders, videos or a camera and write, per input <stem>,
    <stem>_mask.png (0/255, the input's size) and, on request, <stem>_overlay, <stem>_recolor and
    <stem>_matte.png. Videos and cameras give videos: <stem>_mask.mkv and <stem>_matte.mkv are
    lossless (FFV1: the mask holds exactly 0/255 in every frame), <stem>_overlay.mp4 and
    <stem>_recolor.mp4 are lossy (mp4v) for watching; --hud draws the FPS on those. The FPS and the
    flicker figure (mean IoU of consecutive masks) are printed at the end. Existing files
    are never overwritten without --force."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hairseg_edge.errors import InputError
    from hairseg_edge.imageio import write_text
    from hairseg_edge.runner import RunOptions, run_source

    options = RunOptions(out_dir=out, model=None if model is None else chosen_model(option=model),
                         overlay=overlay, recolor=recolor, soft=soft,
                         show=show, force=force, smooth=smooth, threads=threads, adapter=adapter,
                         flip_tta=flip_tta, max_frames=frames, hud=hud,
                         recolor_strength=recolor_strength, roi=roi, max_people=max_people,
                         face_detector=face_detector)
    if json_path is not None and json_path.exists() and not force:
        raise InputError("already exists (pass --force to overwrite)", json_path)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, redirect_stdout=False,
                        redirect_stderr=False)
    observer = _RichObserver(progress)
    try:
        result = run_source(source, options, observer=observer)
    finally:
        observer.stop()

    for item in result.items:
        if item.ok and item.kind != "image":
            console.print(_describe_stream(item), highlight=False, soft_wrap=True)
    n_files = sum(len(item.outputs) for item in result.items)
    summary = f"{result.n_ok} of {len(result.items)} input(s) done, {n_files} file(s) in {out}"
    if result.stopped_by_user:
        summary += " (stopped by the user)"
    console.print(summary, highlight=False, soft_wrap=True)
    if json_path is not None:
        write_text(json_path, json.dumps(result.to_dict(), indent=2) + "\n", force=force)
    if result.exit_code:
        if len(result.items) > 1:  # one input: its own line above already said it all
            print(f"hairseg-edge: {result.n_failed} of {len(result.items)} inputs failed or were "
                  "refused (see above)", file=sys.stderr)
        raise typer.Exit(code=result.exit_code)
