"""``hairseg-edge average``: the mean of several trained models' weights, a model soup (needs [train])."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hairseg_edge.errors import InputError

from ._common import console, reports_errors
from .train import bundled_or_path, require_train_extra


def _parse_weights(text: Optional[str]) -> Optional[list[float]]:
    if not text:
        return None
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise InputError(f"--weights must be numbers separated by commas, got {text!r}") from None


@reports_errors
def average(
    models: Annotated[list[str], typer.Argument(
        help="Two or more .keras models of one architecture, width and input size, e.g. runs fine-tuned "
        "from one ancestor. A tier name (default, large) = its bundled float model.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Folder for model.keras and average.json (which records the "
                                      "models, their sha256 and weights).")],
    weights: Annotated[Optional[str], typer.Option(
        help="Mixing weights, one per model, e.g. 1,2 (normalised to sum to 1; default: equal).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an earlier average in --out.")] = False,
) -> None:
    """Average the weights of models fine-tuned from one ancestor (BatchNorm statistics included).

    The result is a model like any other: export it with `hairseg-edge export OUT/model.keras --int8` and
    compare it with its ingredients with `hairseg-edge eval`.
    """
    require_train_extra("hairseg-edge average")
    from hairseg_edge.cli._tables import Column, print_table, short_labels
    from hairseg_edge.training.soup import average_models

    with console.status("averaging the weights ..."):
        result = average_models([bundled_or_path(m) for m in models], out, _parse_weights(weights), force=force)
    labels, notes = short_labels([str(i.path) for i in result.ingredients])
    print_table(console, [Column("model", numeric=False, key=True), Column("weight"),
                          Column("sha256", numeric=False)],
                [[label, f"{i.weight:.3f}", i.sha256[:12]] for label, i in zip(labels, result.ingredients)],
                title=f"average of {len(result.ingredients)} models ({result.params:,} parameters, "
                      f"{result.input_size} px)", notes=notes)
    console.print(f"model: {result.model_path}")
    console.print(f"next: hairseg-edge export {result.model_path} --int8 --data DIR")


def register(app: typer.Typer) -> None:
    app.command(name="average")(average)
