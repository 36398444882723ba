"""``hairseg-edge bench``: time models side by side, each model and thread count in its own process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hairseg_edge.cli._common import (
    MODEL_HELP, bounded, chosen_model, console,
    err_console, reports_errors,
)

if TYPE_CHECKING:
    from rich.console import Console

    from hairseg_edge.cli._tables import Column

    from hairseg_edge.bench import BenchOptions, BenchResult
    from hairseg_edge.tier_pick import PickResult


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench_command)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _table_parts(results: list[BenchResult], options: BenchOptions
                 ) -> tuple[str, list[Column], list[list[str]], list[str]]:
    from hairseg_edge.cli._tables import Column, short_labels

    mode = "end-to-end (read, prepare, infer, post)" if options.end_to_end else "invoke only"
    if options.roi == "auto":
        mode = "end-to-end (read, prepare, infer, post, roi: locate + crops)"
    if options.flip_tta:
        mode += " with --flip-tta"
    frame = f", frame {options.image}" if options.image is not None else \
        (", synthetic 1280x720 frame" if options.end_to_end else "")
    title = (f"hairseg-edge bench: {mode}, {options.runs} runs after {options.warmup} warm-up"
             f"{frame}; times in ms")
    columns = [Column("model", numeric=False, key=True), Column("thr"), Column("p50"), Column("p90"),
               Column("p99"), Column("mean ± std"), Column("FPS"), Column("first"), Column("load"),
               Column("MB"), Column("RSS MB"), Column("input", numeric=False)]
    if options.end_to_end:
        columns.append(Column("read/prep/infer/post" + ("/roi" if options.roi == "auto" else "")))
    labels, notes = short_labels([r.model for r in results], [r.adapter for r in results])
    rows = []
    for label, r in zip(labels, results):
        if not r.ok:
            error = r.error or ""
            if error.startswith(f"{r.model}: "):
                error = error[len(r.model) + 2:]  # the label already names the file
            rows.append([label, str(r.threads)] + ["-"] * (len(columns) - 2))
            notes.append(f"{label} with {r.threads} thread(s) failed: {error}")
            continue
        shape = "x".join(str(d) for d in (r.input_shape or ()))
        row = [
            label, str(r.threads), _ms(r.p50_ms), _ms(r.p90_ms), _ms(r.p99_ms),
            f"{r.mean_ms:.2f} ± {r.std_ms:.2f}", f"{r.fps:.1f}", _ms(r.first_ms), _ms(r.load_ms),
            f"{(r.size_bytes or 0) / 1e6:.2f}", f"{r.peak_rss_mb:.0f}", f"{shape} {r.input_dtype}",
        ]
        if options.end_to_end:
            row.append("/".join(f"{r.stages_ms.get(s, 0.0):.1f}"
                                for s in ("read", "prepare", "infer", "post", "roi") if s in r.stages_ms))
        rows.append(row)
    return title, columns, rows, notes


def _print_table(results: list[BenchResult], options: BenchOptions, console: Console) -> None:
    from hairseg_edge.cli._tables import print_table

    title, columns, rows, notes = _table_parts(results, options)
    print_table(console, columns, rows, title=title, notes=notes)


def _print_pick_table(pick: PickResult, console: Console) -> None:
    """The tiers timed by ``--pick``, through the same printer as every CLI table (fits 80 columns)."""
    from hairseg_edge.cli._tables import Column, print_table

    title = (f"hairseg-edge bench --pick: bundled tiers, end to end (read, prepare, infer, post), "
             f"{pick.threads} thread(s); budget {pick.budget_ms:g} ms per frame; card IoU: the int8 "
             f"model's, mean over the validation splits (--json has each)")
    columns = [Column("tier", numeric=False, key=True), Column("model", numeric=False), Column("p50 ms"),
               Column("card IoU"), Column("fits", numeric=False)]
    rows, notes = [], []
    for t in pick.tiers:
        fits = "picked" if t is pick.chosen else ("yes" if t.fits else "no")
        if t.error is not None:
            fits = "error"
            notes.append(f"{t.tier}: {t.error}")
        rows.append([t.tier, Path(t.model).name, "-" if t.p50_ms is None else f"{t.p50_ms:.2f}",
                     f"{t.card_iou['mean']:.4f}", fits])
    print_table(console, columns, rows, title=title, notes=notes)


def _pick(budget_ms: Optional[float], options: BenchOptions, json_path: Optional[Path], force: bool) -> None:
    """``--pick``: time the bundled tiers and print (and write) the most accurate one within budget."""
    from hairseg_edge.errors import InputError
    from hairseg_edge.imageio import write_text
    from hairseg_edge.tier_pick import pick_tier

    if budget_ms is None:
        raise InputError("--pick needs --budget-ms, the most milliseconds a frame may take")
    with err_console.status("timing the bundled tiers") as status:
        pick = pick_tier(budget_ms, options, progress=lambda model, _threads: status.update(
            f"timing {Path(model).name} end to end in its own process"))
    _print_pick_table(pick, console)
    if pick.chosen is not None:
        c = pick.chosen
        console.print(f"picked: {c.tier} ({c.p50_ms:.2f} ms per frame within {budget_ms:g} ms; card IoU "
                      f"{c.card_iou['mean']:.4f}): hairseg-edge run --model {c.tier} ...",
                      soft_wrap=True, highlight=False, markup=False)
    if json_path is not None:
        write_text(json_path, pick.to_json(), force=force)
    pick.check()


@reports_errors
def bench_command(
    models: Annotated[Optional[list[str]], typer.Argument(
        help="The .tflite models to time, or bundled tiers (default: the bundled int8 model).",
        show_default=False)] = None,
    model_options: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help=MODEL_HELP + " Repeat for several.", show_default=False)] = None,
    pick: Annotated[bool, typer.Option(
        "--pick", help="Time every bundled tier end to end on this device and print (with --json, "
                       "write) the most accurate one within --budget-ms; exit 1 if none fits.")] = False,
    budget_ms: Annotated[Optional[float], typer.Option(
        "--budget-ms", help="With --pick: the most milliseconds one frame may take (p50).",
        show_default=False, callback=bounded(0.001, 60_000))] = None,
    threads: Annotated[str, typer.Option(
        "--threads", "-t", help="Comma-separated interpreter thread counts, e.g. 1,2,4.")] = "1",
    runs: Annotated[int, typer.Option("--runs", "-n", help="Timed runs per measurement.",
        callback=bounded(1, 1_000_000))] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs after the first.",
        callback=bounded(0, 1_000_000))] = 5,
    image: Annotated[Optional[Path], typer.Option(
        "--image", help="Time on this image instead of synthetic input.", show_default=False)] = None,
    end_to_end: Annotated[bool, typer.Option(
        "--end-to-end", help="Time read + letterbox/resize + inference + postprocessing of a "
                             "camera-sized frame (1280x720 synthetic, or --image).")] = False,
    flip_tta: Annotated[bool, typer.Option(
        "--flip-tta", help="With --end-to-end: time the frame path of run/eval --flip-tta (each frame "
                           "also runs mirrored and the two outputs are averaged).")] = False,
    roi: Annotated[str, typer.Option(
        "--roi", help="With --end-to-end: auto also times the region stage of run/eval (find the "
                      "head on the whole frame, segment full-resolution crops; stage 'roi'); off "
                      "(default) times the single pass.")] = "off",
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Write the results as a JSON list here.", show_default=False)] = None,
    csv_path: Annotated[Optional[Path], typer.Option(
        "--csv", help="Write the results as CSV here.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --json/--csv files.")]
    = False,
) -> None:
    """Time .tflite models side by side: size, input, load, first inference, p50/p90/p99/mean/std
    latency, FPS and peak memory. Each model and thread count runs in its own process. A model that
    fails gets a row with its reason, and the command then exits 2. With --pick --budget-ms X: time
    every bundled tier end to end and name the most accurate one (model card IoU) within X ms."""
    from hairseg_edge.bench import BenchOptions, benchmark, parse_threads, results_csv, results_json
    from hairseg_edge.errors import InputError
    from hairseg_edge.imageio import write_text

    if pick and (models or model_options):
        raise InputError("--pick times the bundled tiers: give no MODEL and no --model with it")
    if budget_ms is not None and not pick:
        raise InputError("--budget-ms goes with --pick")
    options = BenchOptions(threads=parse_threads(threads), runs=runs, warmup=warmup, image=image,
                           end_to_end=end_to_end or pick, flip_tta=flip_tta, roi=roi)
    for out in (json_path, csv_path):
        if out is not None and out.exists() and not force:
            raise InputError("already exists (pass --force to overwrite)", out)
    if pick:
        if csv_path is not None:
            raise InputError("--pick writes --json only")
        _pick(budget_ms, options, json_path, force)
        return
    names = [*(models or []), *(model_options or [])]
    paths = [chosen_model(option=name) for name in names] if names else [chosen_model()]

    total = len(paths) * len(options.threads)
    with err_console.status("starting") as status:
        done = 0

        def progress(model: str, n_threads: int) -> None:
            nonlocal done
            done += 1
            status.update(f"[{done}/{total}] timing {Path(model).name} with {n_threads} "
                          f"thread(s) in its own process")

        results = benchmark([str(m) for m in paths], options, progress=progress)

    _print_table(results, options, console)
    if json_path is not None:
        write_text(json_path, results_json(results), force=force)
    if csv_path is not None:
        write_text(csv_path, results_csv(results), force=force)
    failed = [r for r in results if not r.ok]
    if failed:
        raise InputError(f"{len(failed)} of {len(results)} measurement(s) failed "
                         f"(first: {failed[0].error})")
