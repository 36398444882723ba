"""The export's result: :class:`ExportReport`, saved as ``report.json`` and ``report.md``.

``report.json`` schema (keys beyond these are extra detail)::

    {
      "float":    {"name": "float", "path", "size_bytes", "gzip_bytes", "sparsity", "iou", "f1",
                   "agreement_iou", "max_prob_diff", "p50_ms", ...},
      "variants": [{"name", "path", "size_bytes", "gzip_bytes", "sparsity", "iou", "f1",
                    "agreement_iou", "max_prob_diff", "p50_ms", "status", "reason", ...}],
      "gate":     {"passed", "max_drop", "min_agreement", "reason", "mode"},
      "calibration": {"path", "count", "ids_hash", ...} | null,
      "evaluation":  {"path", "count", "ids_hash", "ground_truth", ...},
      "pruning": {...} | null, "qat": {...} | null,
      "options": {...}, "versions": {...}, "created": "...", "duration_s": ...
    }

``float`` is the original model as given (unpruned), measured as a float32 .tflite converted from
it; its ``path`` is the .keras file and ``size_bytes`` the size of that float32 .tflite. A variant's
``path`` is absolute, or null when the gate rejected it (nothing was written). IoU and F1 are null
when the evaluation images have no ground truth.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hairseg_edge.errors import CheckFailed
from hairseg_edge.imageio import write_text

WRITTEN = "written"
REJECTED = "rejected"

_VERSIONED = ("hairseg-edge", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
              "numpy", "opencv-python-headless")


def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(),
                                       "platform": f"{platform.system()} {platform.machine()}"}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


@dataclass(frozen=True)
class ModelResult:
    """One row of the report: the float original or a converted variant."""

    name: str
    path: str | None
    size_bytes: int
    gzip_bytes: int
    sparsity: float | None
    iou: float | None
    f1: float | None
    agreement_iou: float | None
    max_prob_diff: float | None
    p50_ms: float | None
    status: str = WRITTEN
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "size_bytes": self.size_bytes,
                "gzip_bytes": self.gzip_bytes, "sparsity": self.sparsity, "iou": self.iou,
                "f1": self.f1, "agreement_iou": self.agreement_iou,
                "max_prob_diff": self.max_prob_diff, "p50_ms": self.p50_ms,
                "status": self.status, "reason": self.reason, **self.extra}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    max_drop: float
    min_agreement: float
    reason: str
    mode: str

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "max_drop": self.max_drop, "min_agreement": self.min_agreement,
                "reason": self.reason, "mode": self.mode}


@dataclass(frozen=True)
class ExportReport:
    """Everything an export did and measured; the CLI renders it, tests assert on it."""

    float: ModelResult
    variants: tuple[ModelResult, ...]
    gate: GateResult
    evaluation: dict[str, Any]
    calibration: dict[str, Any] | None
    pruning: dict[str, Any] | None
    qat: dict[str, Any] | None
    options: dict[str, Any]
    versions: dict[str, str | None]
    created: str
    duration_s: float
    notes: tuple[str, ...] = ()

    def variant(self, name: str) -> ModelResult:
        for row in self.variants:
            if row.name == name:
                return row
        raise KeyError(f"no variant {name!r} in this report ({', '.join(v.name for v in self.variants)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "float": self.float.to_dict(),
            "variants": [row.to_dict() for row in self.variants],
            "gate": self.gate.to_dict(),
            "calibration": self.calibration,
            "evaluation": self.evaluation,
            "pruning": self.pruning,
            "qat": self.qat,
            "notes": list(self.notes),
            "options": self.options,
            "versions": self.versions,
            "created": self.created,
            "duration_s": self.duration_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    # -- rendering -------------------------------------------------------------------------------

    def _rows(self, terminal: bool = False) -> list[list[str]]:
        rows = []
        ref_size = self.float.size_bytes or 1
        ref_ms = self.float.p50_ms
        for row in (self.float, *self.variants):
            speedup = (ref_ms / row.p50_ms) if (ref_ms and row.p50_ms) else None
            cells = {
                "model": row.name,
                "status": "reference" if row is self.float else row.status,
                "size KB": _kb(row.size_bytes),
                "size vs float": f"{row.size_bytes / ref_size:.2f}x",
                "gzip KB": _kb(row.gzip_bytes),
                "sparsity": _num(row.sparsity, 3),
                "IoU": _num(row.iou, 4),
                "F1": _num(row.f1, 4),
                "agreement IoU": _num(row.agreement_iou, 4),
                "max prob diff": _num(row.max_prob_diff, 3),
                "p50 ms": _num(row.p50_ms, 2),
                "speed-up": "" if speedup is None else f"{speedup:.2f}x",
            }
            rows.append([cells[h] for h in self._headers(terminal)])
        return rows

    _HEADERS = ("model", "status", "size KB", "size vs float", "gzip KB", "sparsity", "IoU", "F1",
                "agreement IoU", "max prob diff", "p50 ms", "speed-up")

    def _headers(self, terminal: bool) -> tuple[str, ...]:
        """All columns for Markdown. On a terminal the table must fit 80 columns: F1 goes (it is in
        the files), and the gzip size and sparsity replace the size ratio when pruning made them
        the interesting numbers."""
        if not terminal:
            return self._HEADERS
        dropped = {"F1"} | ({"size vs float"} if self.pruning is not None else {"gzip KB", "sparsity"})
        return tuple(h for h in self._HEADERS if h not in dropped)

    def to_markdown(self) -> str:
        lines = ["# hairseg-edge export report", ""]
        lines.append(f"Model: `{self.float.path}`  ")
        lines.append(f"Created: {self.created} ({self.duration_s:.0f} s)  ")
        verdict = "PASSED" if self.gate.passed else "FAILED"
        lines.append(f"Gate: **{verdict}** ({self.gate.mode}; max IoU drop {self.gate.max_drop}, "
                     f"min agreement {self.gate.min_agreement}): {self.gate.reason}")
        headers = self._headers(terminal=False)
        lines += ["", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in self._rows()]
        lines += ["", "Latency: median of timed invokes on one thread in this process, on a real "
                  "evaluation image, after warm-up. Speed-up is against the float32 reference.", ""]
        lines.append("## Files")
        for row in self.variants:
            where = f"`{row.path}`" if row.path else "not written"
            lines.append(f"- **{row.name}** ({row.status}): {where}. {row.reason}")
        lines += ["", "## Images"]
        lines.append(_describe_set("Evaluation", self.evaluation))
        if self.calibration is not None:
            lines.append(_describe_set("Calibration", self.calibration))
        if self.pruning is not None:
            p = self.pruning
            s = p["schedule"]
            lines += ["", "## Pruning",
                      f"Target {p['target']:.2f}, achieved {p['sparsity']:.4f} over the pruned kernels. "
                      f"PolynomialDecay {s['initial_sparsity']} -> {s['final_sparsity']}, steps "
                      f"{s['begin_step']}..{s['end_step']} every {s['frequency']} of "
                      f"{s['total_steps']}. Left dense: {', '.join(p['left_dense']) or 'none'}.",
                      "", "| layer | weight | size | sparsity |", "|---|---|---|---|"]
            lines += [f"| {item['layer']} | {item['weight']} | {item['size']} | {item['sparsity']:.4f} |"
                      for item in p["layers"]]
        if self.qat is not None:
            q = self.qat
            lines += ["", "## Quantization-aware training",
                      f"Scheme: {q['scheme']}. Layers left float during QAT: "
                      f"{', '.join(q['layers_left_float']) or 'none'}."]
            if q.get("note"):
                lines.append(f"Note: {q['note']}")
        if self.notes:
            lines += ["", "## Notes"] + [f"- {note}" for note in self.notes]
        lines += ["", "## Versions", ", ".join(f"{k} {v}" for k, v in self.versions.items()), ""]
        return "\n".join(lines)

    def terminal_table(self) -> tuple[str, list[str], list[list[str]]]:
        """Title (Rich markup), short headers and rows of the float original and the variants, for
        the CLI's table printer (which fits them to the terminal)."""
        verdict = "[green]passed[/]" if self.gate.passed else "[red]FAILED[/]"
        headers = [TERMINAL_HEADERS.get(h, h) for h in self._headers(terminal=True)]
        rows = []
        for cells in self._rows(terminal=True):
            if cells[1] == REJECTED:
                cells[1] = f"[red]{REJECTED}[/]"
            elif cells[1] == "reference":
                cells[1] = "ref"
            rows.append(cells)
        return f"export: gate {verdict} ({self.gate.mode})", headers, rows

    # -- saving and checking ---------------------------------------------------------------------

    def save(self, out: str | Path, *, force: bool = False) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` in ``out`` atomically; returns their paths."""
        out = Path(out)
        json_path = write_text(out / "report.json", self.to_json(), force=force)
        md_path = write_text(out / "report.md", self.to_markdown(), force=force)
        return json_path, md_path

    def raise_for_gate(self) -> None:
        """Raise :class:`~hairseg_edge.errors.CheckFailed` (exit 1) when the gate failed."""
        if not self.gate.passed:
            raise CheckFailed(f"export gate failed: {self.gate.reason}")


#: Short terminal headers of the report's columns (the Markdown report keeps the long ones).
TERMINAL_HEADERS = {"size KB": "KB", "size vs float": "size", "gzip KB": "gzip", "sparsity": "sparse",
                    "agreement IoU": "agree", "max prob diff": "max dp", "speed-up": "speed"}


def _kb(n: int | None) -> str:
    return "" if n is None else f"{n / 1024:.1f}"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _describe_set(title: str, info: dict[str, Any]) -> str:
    gt = "" if info.get("ground_truth", True) else ", no ground truth"
    return (f"- {title}: {info['count']} images from `{info['path']}` ({info['selection']}{gt}; "
            f"id-list hash {info['ids_hash']})")
