"""``bench --pick``: time every bundled tier on this device, end to end, and pick the most accurate one
that fits a latency budget.

Accuracy is the tier's model card figure (the int8 model's global IoU, mean over the recorded validation
splits: :func:`hairseg_edge.models.card_iou`), latency is measured here and now (``bench --end-to-end``:
read, prepare, infer and postprocess a camera-sized frame, each tier in its own process), because a
budget is about this device, not the one the card was measured on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench import BenchOptions, BenchResult, benchmark
from .errors import CheckFailed, InputError
from .models import Tier, bundled_tiers, card_iou


@dataclass(frozen=True)
class TierTiming:
    """One bundled tier: its model file, measured frame latency and card accuracy."""

    tier: str
    model: str
    p50_ms: float | None
    card_iou: dict[str, float]
    fits: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "model": self.model, "p50_ms": self.p50_ms, "card_iou": self.card_iou,
                "fits": self.fits, "error": self.error}


@dataclass(frozen=True)
class PickResult:
    """Every tier's timing and the chosen one (None when no tier fits the budget)."""

    budget_ms: float
    threads: int
    tiers: list[TierTiming]
    chosen: TierTiming | None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"budget_ms": self.budget_ms, "threads": self.threads,
                "chosen": None if self.chosen is None else self.chosen.to_dict(),
                "tiers": [t.to_dict() for t in self.tiers], "bench_options": self.options}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def check(self) -> None:
        """CheckFailed (exit 1) when no tier fits the budget."""
        if self.chosen is None:
            fastest = min((t for t in self.tiers if t.p50_ms is not None), key=lambda t: t.p50_ms or 0.0,
                          default=None)
            best = f"; the fastest, {fastest.tier}, took {fastest.p50_ms:.2f} ms" if fastest else ""
            raise CheckFailed(f"no bundled tier fits {self.budget_ms:g} ms per frame on this device{best}")


def _timing(tier: Tier, result: BenchResult, budget_ms: float, models_dir: Path | None) -> TierTiming:
    iou = card_iou(tier, models_dir)
    if not result.ok or result.p50_ms is None:
        return TierTiming(tier.name, result.model, None, iou, False, result.error or "timing failed")
    return TierTiming(tier.name, result.model, result.p50_ms, iou, result.p50_ms <= budget_ms)


def pick_tier(budget_ms: float, options: BenchOptions, *, models_dir: Path | None = None,
              progress: Any = None) -> PickResult:
    """Time every bundled tier's int8 model end to end with ``options`` (one thread count) and choose
    the one with the best card IoU among those whose p50 frame time is within ``budget_ms``; ties go to
    the faster one. InputError for a budget that is not positive or more than one thread count."""
    if not budget_ms > 0:
        raise InputError(f"--budget-ms must be a positive number of milliseconds, got {budget_ms:g}")
    if len(options.threads) != 1:
        raise InputError("--pick times one thread count; give --threads a single number")
    if not options.end_to_end:
        raise InputError("--pick times the whole frame path: pass end-to-end bench options")
    tiers = bundled_tiers(models_dir)
    if not tiers:
        raise InputError("no bundled model tier in this install")
    for tier in tiers:  # a tier without a readable card fails before minutes of timing
        card_iou(tier, models_dir)
    results = benchmark([str(t.path("int8", models_dir)) for t in tiers], options, progress=progress)
    timings = [_timing(t, r, budget_ms, models_dir) for t, r in zip(tiers, results)]
    fitting = [t for t in timings if t.fits]
    chosen = max(fitting, key=lambda t: (t.card_iou["mean"], -(t.p50_ms or 0.0)), default=None)
    return PickResult(budget_ms, options.threads[0], timings, chosen, options.to_dict())
