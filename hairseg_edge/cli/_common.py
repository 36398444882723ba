"""Shared plumbing for CLI commands: error reporting and consoles."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
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
