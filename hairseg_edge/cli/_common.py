"""Shared plumbing for CLI commands: error reporting and consoles."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from hairseg_edge.errors import HairsegError

F = TypeVar("F", bound=Callable[..., Any])

#: Tables and progress go to stdout; diagnostics to stderr.
console = Console()
err_console = Console(stderr=True)


def reports_errors(func: F) -> F:
    """Turn library errors into one line on stderr and the error's exit code (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HairsegError as err:
            print(f"hairseg-edge: {err}", file=sys.stderr)
            raise typer.Exit(code=err.exit_code) from None
        except KeyboardInterrupt:
            print("hairseg-edge: interrupted", file=sys.stderr)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def bounded(low: float | None = None, high: float | None = None) -> Callable[..., Any]:
    """A Typer option callback that refuses a number outside ``[low, high]`` (and NaN or infinity)
    in one line naming the option, exit 2, before the command runs. Integers without ``high`` stop
    at 2**31 - 1, the most any native library behind an option takes."""
    import math

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        name = param.opts[0] if param.opts else param.name
        top = high if high is not None or isinstance(value, float) else 2**31 - 1
        bad = (isinstance(value, float) and not math.isfinite(value)) or \
            (low is not None and value < low) or (top is not None and value > top)
        if bad:
            def show(x: float) -> str:
                return str(x) if isinstance(x, int) else f"{x:g}"

            span = (f"between {show(low)} and {show(top)}" if low is not None and top is not None
                    else f"at least {show(low)}" if low is not None else f"at most {show(top)}")
            print(f"hairseg-edge: {name} must be {span}, got {value!r}", file=sys.stderr)
            raise typer.Exit(code=2)
        return value

    return check


#: Help of every command's ``--model`` option (tier names, then paths).
MODEL_HELP = ("A bundled tier (default, fast = default, large) or the path of a model file; "
              "`hairseg-edge bench --pick` says which tier fits your device.")


def chosen_model(argument: str | None = None, option: str | None = None, kind: str = "int8") -> Path:
    """The one resolver behind every command's MODEL: a positional MODEL or ``--model`` (not both),
    a tier name or a path, None = the default tier (see :func:`hairseg_edge.models.resolve_model`)."""
    from hairseg_edge.errors import InputError
    from hairseg_edge.models import resolve_model

    if argument is not None and option is not None:
        raise InputError(f"give the model once: as MODEL ({argument}) or as --model ({option}), not both")
    return resolve_model(option if option is not None else argument, kind)


#: ``--roi`` help, shared by run and eval (the measurement behind the default: benchmarks/results/roi.md).
ROI_HELP = ("auto: find the head(s) with a first pass on the whole frame, then segment a "
            "full-resolution crop of each (small heads, group and high-resolution photos gain; a "
            "face-filling photo keeps the single pass; videos track the region, one inference per "
            "frame); off: one pass on the whole frame.")
MAX_PEOPLE_HELP = "With --roi auto: segment at most this many heads (default 2)."
#: ``--face-detector`` help, shared by run and eval (benchmarks/results/roi_detector.md).
FACE_DETECTOR_HELP = ("With --roi auto: the face detector that locates the head when the first pass finds "
                      "no hair (small heads): the path of a BlazeFace short-range .tflite, or off. Default: "
                      "the bundled one.")


def face_detector_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Typer callback of ``--face-detector``: ``off`` or an existing file, else one line naming it,
    exit 2, before the command runs (the Segmenter then checks the file is a BlazeFace model)."""
    if value is None or value == "off":
        return value
    path = Path(value)
    problem = ("no such file" if not path.exists() else "is a folder, expected a .tflite file"
               if path.is_dir() else None)
    if problem is not None:
        name = param.opts[0] if param.opts else param.name
        print(f"hairseg-edge: {name}: {value}: {problem}", file=sys.stderr)
        raise typer.Exit(code=2)
    return value
