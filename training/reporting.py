"""What a run reports per epoch: ``history.json`` / ``history.csv`` and ``training_curve.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hairseg_edge.imageio import atomic_path, write_text


def write_history(out: Path, history: list[dict[str, float]]) -> None:
    write_text(out / "history.json", json.dumps(history, indent=1), force=True)
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        lines = [",".join(keys)] + [",".join(_fmt(row.get(k)) for k in keys) for row in history]
        write_text(out / "history.csv", "\n".join(lines) + "\n", force=True)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Training curves: losses on the left, validation IoU/F1 on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["loss"] for r in history], label="train loss")
    if any("val_loss" in r for r in history):
        ax1.plot(epochs, [r.get("val_loss", math.nan) for r in history], label="val loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("BCE + Dice")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key in sorted(k for k in history[-1] if k.startswith("val_iou")):
        ax2.plot(epochs, [r.get(key, math.nan) for r in history], label=key.replace("val_", ""))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation IoU (inference mode)")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle("hairseg-edge training")
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
