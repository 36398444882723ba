"""Errors that the CLI turns into one line on stderr and an exit code (no traceback).

Exit codes, everywhere: 0 success; 1 a check failed (accuracy gate, regression, agreement);
2 bad input, bad usage or a missing extra.
"""

from __future__ import annotations

import os


class HairsegError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user; ``exit_code`` is the process's."""

    exit_code = 2


class InputError(HairsegError):
    """A file, folder or value given by the user cannot be used. Names the path when there is one."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class MissingExtraError(HairsegError):
    """A command needs an optional extra (``[train]``, ``[mobile]``) that is not installed."""

    exit_code = 2

    def __init__(self, extra: str, what: str):
        super().__init__(
            f"{what} needs the '{extra}' extra: pip install \"hairseg-edge[{extra}]\""
        )


class CheckFailed(HairsegError):
    """A quality check did not pass (accuracy gate, regression, agreement)."""

    exit_code = 1


class UnverifiedModelWarning(UserWarning):
    """A model was accepted as a hair model from its tensor shapes alone (no hairseg metadata, no
    explicit ``--adapter``): a person or selfie segmenter has the same shapes. The CLI prints it as
    one line on stderr (``hairseg-edge: warning: ...``)."""


def reason(exc: BaseException) -> str:
    """The first line of an exception, short enough for a one-line error (a loader's failure)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
