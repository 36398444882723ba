"""Tables that read right at any width, piped or in an 80-column terminal.

Every table the CLI prints goes through :func:`print_table`. Numbers are never wrapped or cut: numeric
columns are ``no_wrap`` and, when all columns do not fit the console, the table is printed in parts,
each repeating the key column(s) (a stacked layout) instead of letting Rich squeeze cells into "560…".
Long labels (model paths) stay out of the cells: :func:`short_labels` gives each model its file stem
and the full paths are listed once below the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


@dataclass(frozen=True)
class Column:
    """One column: ``numeric`` cells are right-aligned and never wrapped; ``key`` columns (the row's
    name) are repeated in every part of a split table and never wrapped either; other text may wrap."""

    header: str
    numeric: bool = True
    key: bool = False
    style: str | None = None
    #: A text column wraps within this many columns (None: takes what the console has left).
    wrap_at: int | None = 36


def short_labels(paths: Sequence[str], details: Sequence[str | None] = ()
                 ) -> tuple[list[str], list[str]]:
    """Short row labels for model paths, and the footnote lines naming each label's full path (and
    its ``details``, e.g. the adapter, when given).

    The label is the file stem; when two models share a stem they become ``stem#1``, ``stem#2``. The
    footnote lists every path once, so the table itself stays narrow.
    """
    unique = list(dict.fromkeys(str(p) for p in paths))  # one label per model, however many rows
    stems = [_shorten(Path(p).stem or p) for p in unique]
    label_of = {}
    for n, (path, stem) in enumerate(zip(unique, stems)):
        clash = stems.count(stem) > 1
        label_of[path] = f"{stem}#{stems[:n + 1].count(stem)}" if clash else stem
    labels = [label_of[str(p)] for p in paths]
    notes = []
    listed = set()
    details = list(details) + [None] * (len(paths) - len(details))
    for label, path, detail in zip(labels, paths, details):
        if label not in listed:
            listed.add(label)
            notes.append(f"{label}: {path}" + (f" ({detail})" if detail else ""))
    return labels, notes


#: Longer file stems keep their end (where names say int8, pruned, qat, v17) behind an ellipsis.
LABEL_WIDTH = 24


def _shorten(stem: str) -> str:
    return stem if len(stem) <= LABEL_WIDTH else "…" + stem[-(LABEL_WIDTH - 1):]


#: What a text column with ``wrap_at=None`` counts for when deciding whether a part fits.
FLEX_MIN = 24


def _build(columns: Sequence[Column], rows: Sequence[Sequence[str]],
           indices: Sequence[int], table_kwargs: dict[str, Any], measuring: bool = False) -> Table:
    table = Table(**table_kwargs)
    for i in indices:
        col = columns[i]
        table.add_column(col.header, justify="right" if col.numeric else "left",
                         no_wrap=col.numeric or col.key, overflow="fold", style=col.style,
                         max_width=None if (col.numeric or col.key) else
                         (col.wrap_at or (FLEX_MIN if measuring else None)))
    for row in rows:
        table.add_row(*(row[i] for i in indices))
    return table


def layout(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]],
           **table_kwargs: Any) -> list[Table]:
    """The table as one or more Rich tables that each fit ``console.width`` without cutting a number.

    Columns are added left to right; when the next one would make the table wider than the console,
    a new part starts (repeating the key columns). A single column too wide for the console on its
    own still gets a part of its own (text folds, numbers overflow rather than being cut).
    """
    width = console.width
    # Measured without the console's limit, which would clamp every measurement to fit.
    options = console.options.update_width(10_000)
    keys = [i for i, c in enumerate(columns) if c.key]
    rest = [i for i, c in enumerate(columns) if not c.key]

    def fits(indices: list[int]) -> bool:
        measured = Measurement.get(console, options, _build(columns, rows, indices, table_kwargs,
                                                            measuring=True))
        # The widest form: Rich's minimum would let it break "2.90 ± 2.33" at its spaces.
        return measured.maximum <= width

    parts: list[list[int]] = []
    current = list(keys)
    for i in rest:
        if len(current) > len(keys) and not fits(current + [i]):
            parts.append(current)
            current = list(keys)
        current.append(i)
    parts.append(current)
    return [_build(columns, rows, indices, table_kwargs) for indices in parts]


def print_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
                title: str | None = None, notes: Sequence[str] = (), **table_kwargs: Any) -> None:
    """Print the title line, the table (split to fit the console) and each note line. The title and
    notes are plain lines, never squeezed into the table's width: a terminal wraps them, a pipe keeps
    them whole."""
    if title:
        console.print(title, highlight=False, soft_wrap=True)
    for table in layout(console, columns, rows, **table_kwargs):
        console.print(table)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True, markup=False)
