"""The ``hairseg-edge`` command line: thin commands over the library API.

Each command lives in its own module and registers itself on :data:`app`. Command modules import
only the device side at import time; heavy work (TensorFlow for train/export) is imported inside the
command, so ``hairseg-edge --help`` is fast and works on a core-only install.
"""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="hairseg-edge",
    help="Train, compress, verify and run hair-segmentation models on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Order = order in --help.
COMMAND_MODULES = ("run", "bench", "eval", "info", "train", "average", "export", "package")


def _version_callback(value: bool) -> None:
    if value:
        from hairseg_edge import __version__

        typer.echo(f"hairseg-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show what native libraries log (TensorFlow, the TFLite "
                                       "converter, absl), which is hidden by default."),
) -> None:
    """Hair segmentation on a Raspberry Pi, a phone or a laptop: train, export to int8, prove, run."""
    if verbose:
        from hairseg_edge.runtime import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    _warnings_as_one_line()


def _warnings_as_one_line() -> None:
    """Show the library's own warnings (a model not known to be a hair model) as one line on
    stderr, once per message, instead of Python's two-line "file:line: Category" form."""
    import sys
    import warnings

    from hairseg_edge.errors import UnverifiedModelWarning

    default = warnings.showwarning
    if getattr(default, "hairseg_one_line", False):  # already installed (CliRunner calls again)
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, UnverifiedModelWarning):
            print(f"hairseg-edge: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    show.hairseg_one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.simplefilter("default", UnverifiedModelWarning)


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()
