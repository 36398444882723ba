"""``hairseg-edge bench``: time models side by side, each model and thread count in its own process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import console, err_console, reports_errors

if TYPE_CHECKING:
    from rich.table import Table

    from hairseg_edge.bench import BenchOptions, BenchResult


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench_command)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _table(results: list[BenchResult], options: BenchOptions) -> Table:
    from rich.table import Table

    mode = "end-to-end (read, prepare, infer, post)" if options.end_to_end else "invoke only"
    if options.flip_tta:
        mode += " with --flip-tta"
    frame = f", frame {options.image}" if options.image is not None else \
        (", synthetic 1280x720 frame" if options.end_to_end else "")
    table = Table(title=f"hairseg-edge bench: {mode}, {options.runs} runs after "
                        f"{options.warmup} warm-up{frame}; times in ms", title_justify="left")
    table.add_column("model", overflow="fold")
    table.add_column("thr", justify="right")
    table.add_column("size MB", justify="right")
    table.add_column("input", overflow="fold")
    table.add_column("load", justify="right")
    table.add_column("first", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p90", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("mean ± std", justify="right")
    table.add_column("FPS", justify="right")
    table.add_column("RSS MB", justify="right")
    if options.end_to_end:
        table.add_column("read/prep/infer/post", justify="right")
    any_failed = any(not r.ok for r in results)
    if any_failed:
        table.add_column("error", overflow="fold", style="red")
    names = [Path(r.model).name for r in results]
    clash = len({(n, r.model) for n, r in zip(names, results)}) > len(set(names))
    for r in results:
        # File names are enough unless two models share one; then show the paths as given.
        name = (r.model if clash else Path(r.model).name) + \
            (f" [dim]({r.adapter})[/]" if r.adapter else "")
        if not r.ok:
            error = r.error or ""
            if error.startswith(f"{r.model}: "):
                error = error[len(r.model) + 2:]  # the model column already names the file
            row = [name, str(r.threads)] + [""] * (len(table.columns) - 3) + [error]
            table.add_row(*row)
            continue
        shape = "x".join(str(d) for d in (r.input_shape or ()))
        row = [
            name, str(r.threads), f"{(r.size_bytes or 0) / 1e6:.2f}", f"{shape} {r.input_dtype}",
            _ms(r.load_ms), _ms(r.first_ms), _ms(r.p50_ms), _ms(r.p90_ms), _ms(r.p99_ms),
            f"{r.mean_ms:.2f} ± {r.std_ms:.2f}", f"{r.fps:.1f}", f"{r.peak_rss_mb:.0f}",
        ]
        if options.end_to_end:
            row.append("/".join(f"{r.stages_ms.get(s, 0.0):.1f}"
                                for s in ("read", "prepare", "infer", "post")))
        if any_failed:
            row.append("")
        table.add_row(*row)
    return table


@reports_errors
def bench_command(
    models: Annotated[Optional[list[Path]], typer.Argument(
        help="The .tflite models to time (default: the bundled int8 model).",
        show_default=False)] = None,
    threads: Annotated[str, typer.Option(
        "--threads", "-t", help="Comma-separated interpreter thread counts, e.g. 1,2,4.")] = "1",
    runs: Annotated[int, typer.Option("--runs", "-n", help="Timed runs per measurement.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs after the first.")] = 5,
    image: Annotated[Optional[Path], typer.Option(
        "--image", help="Time on this image instead of synthetic input.", show_default=False)] = None,
    end_to_end: Annotated[bool, typer.Option(
        "--end-to-end", help="Time read + letterbox/resize + inference + postprocessing of a "
                             "camera-sized frame (1280x720 synthetic, or --image).")] = False,
    flip_tta: Annotated[bool, typer.Option(
        "--flip-tta", help="With --end-to-end: time the frame path of run/eval --flip-tta (each frame "
                           "also runs mirrored and the two outputs are averaged).")] = False,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Write the results as a JSON list here.", show_default=False)] = None,
    csv_path: Annotated[Optional[Path], typer.Option(
        "--csv", help="Write the results as CSV here.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --json/--csv files.")]
    = False,
) -> None:
    """Time .tflite models side by side: size, input, load, first inference, p50/p90/p99/mean/std
    latency, FPS and peak memory. Each model and thread count runs in its own process. A model that
    fails gets a row with its reason, and the command then exits 2."""
    from hairseg_edge.bench import BenchOptions, benchmark, parse_threads, results_csv, results_json
    from hairseg_edge.errors import InputError
    from hairseg_edge.imageio import write_text

    options = BenchOptions(threads=parse_threads(threads), runs=runs, warmup=warmup, image=image,
                           end_to_end=end_to_end, flip_tta=flip_tta)
    for out in (json_path, csv_path):
        if out is not None and out.exists() and not force:
            raise InputError("already exists (pass --force to overwrite)", out)
    if not models:
        from hairseg_edge.models import default_model_path

        models = [default_model_path("int8")]

    total = len(models) * len(options.threads)
    with err_console.status("starting") as status:
        done = 0

        def progress(model: str, n_threads: int) -> None:
            nonlocal done
            done += 1
            status.update(f"[{done}/{total}] timing {Path(model).name} with {n_threads} "
                          f"thread(s) in its own process")

        results = benchmark([str(m) for m in models], options, progress=progress)

    console.print(_table(results, options))
    if json_path is not None:
        write_text(json_path, results_json(results), force=force)
    if csv_path is not None:
        write_text(csv_path, results_csv(results), force=force)
    failed = [r for r in results if not r.ok]
    if failed:
        raise InputError(f"{len(failed)} of {len(results)} measurement(s) failed "
                         f"(first: {failed[0].error})")
