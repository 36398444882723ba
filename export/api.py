"""``hairseg-edge export`` as one library call: :func:`export_model`.

::

    from hairseg_edge.export import ExportOptions, export_model

    report = export_model(ExportOptions("hair.keras", variants=("float32", "int8"), prune=0.5,
                                        data="faces/", out="export-out"))
    report.gate.passed, report.variant("int8").iou, report.variant("int8").p50_ms
    report.raise_for_gate()   # CheckFailed (exit 1) when a variant missed the gate

Steps: load the float .keras model -> convert it as given to a float32 .tflite (the reference) ->
optionally prune (fine-tune, strip) -> optionally QAT -> convert each variant from a batch-1 model
-> run the reference and every variant through the device runtime on the evaluation images and
time them on one thread -> gate each variant -> write the variants that passed and the report.

Files: every model is built and verified under a temporary folder; only a variant that passed the
gate is then copied to ``out`` (atomically: temporary name, then rename). A variant that failed is
not written at all, and an earlier file at its path is left as it was. Existing outputs are refused
up front unless ``force``, so a long export never fails at its last step because of them.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hairseg_edge.errors import InputError
from hairseg_edge.imageio import write_bytes

from . import verify
from .convert import convert, gzip_size
from .finetune import plan_finetune
from .image_sets import ImageSet, calibration_set, evaluation_set, finetune_set, representative_dataset
from .keras_models import input_size_of, load_float_model, with_batch_size_one
from .options import VARIANTS, ExportOptions, VariantSpec
from .prune import PruneResult, layers_to_prune, measure_sparsity, prune
from .qat import QatResult, quantize_aware
from .report import REJECTED, WRITTEN, ExportReport, GateResult, ModelResult, tool_versions

#: ``progress(message)``: one line per step, for the CLI to show.
Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass
class _Candidate:
    """A converted variant waiting for its verdict (bytes live in the work folder until then)."""

    spec: VariantSpec
    data: bytes
    work_path: Path
    final_path: Path
    sparsity: float | None
    built_with: str
    scores: verify.Scores | None = None
    decision: verify.Decision | None = None


def refuse_existing_outputs(options: ExportOptions) -> None:
    """InputError naming the first output that exists, unless ``options.force``."""
    if options.force:
        return
    for path in options.output_paths():
        if path.exists():
            raise InputError("already exists (pass --force to overwrite)", path)


def export_model(options: ExportOptions, *, progress: Progress | None = None) -> ExportReport:
    """Run the whole export (see the module docstring) and return its report.

    The report is saved in ``options.out`` whether or not the gate passed; a failed gate is in
    ``report.gate`` (call :meth:`ExportReport.raise_for_gate`), not raised, so callers can render
    the numbers first. Raises InputError for unusable inputs (exit 2).
    """
    say = progress or _quiet
    started = time.monotonic()
    refuse_existing_outputs(options)

    say(f"loading {options.model}")
    model = load_float_model(options.model)
    size = input_size_of(model)
    evaluation = evaluation_set(options.eval_data, options.data, options.limit)
    calibration = (calibration_set(options.calib, options.data, options.limit, options.calib_count)
                   if options.needs_calibration else None)
    tuning = finetune_set(options.data, options.limit) if options.finetunes else None
    notes = _notes_on_sets(evaluation, calibration)

    with tempfile.TemporaryDirectory(prefix="hairseg-export-") as tmp:
        work = Path(tmp)
        say("converting the float original to a float32 .tflite reference")
        reference_bytes = convert(with_batch_size_one(model), VARIANTS["float32"])
        reference_path = work / "float-reference.tflite"
        reference_path.write_bytes(reference_bytes)
        say(f"scoring the float reference on {len(evaluation)} evaluation images")
        reference_scores = verify.score(reference_path, evaluation)

        pruned, qat = _compress(model, size, tuning, options, say)
        source = pruned.model if pruned is not None else model
        weights_to_measure = (pruned.pruned_weights if pruned is not None
                              else _prunable_weights(model))
        source_sparsity = _sparsity(source, weights_to_measure)
        source_b1 = with_batch_size_one(source)
        representative = (representative_dataset(calibration, size) if calibration is not None else None)

        candidates = []
        for spec in options.variant_specs:
            say(f"converting {spec.name}" + (" (from the QAT model)" if spec.name == "int8" and qat else ""))
            if spec.name == "int8" and qat is not None:
                data = convert(qat.export_model, spec, io=options.io, representative=representative)
                sparsity = _sparsity(qat.model, weights_to_measure)
                built_with = f"QAT ({qat.scheme})"
            elif spec.name == "float32" and pruned is None:
                data = reference_bytes  # the very same conversion as the reference
                sparsity, built_with = source_sparsity, "conversion"
            else:
                data = convert(source_b1, spec, io=options.io, representative=representative)
                sparsity = source_sparsity
                built_with = "post-training calibration" if spec.needs_calibration else "conversion"
            work_path = work / f"{spec.name}.tflite"
            work_path.write_bytes(data)
            candidates.append(_Candidate(spec, data, work_path, options.model_path(spec.name),
                                         sparsity, built_with))

        for cand in candidates:
            say(f"verifying {cand.spec.name} against the float reference on {len(evaluation)} images")
            cand.scores = verify.score(cand.work_path, evaluation, reference=reference_path)
            cand.decision = verify.judge(cand.scores, reference_scores, max_drop=options.max_drop,
                                         min_agreement=options.min_agreement)

        say(f"timing {len(candidates) + 1} models on one thread")
        latency = verify.measure_p50_ms(
            {"float": reference_path, **{c.spec.name: c.work_path for c in candidates}},
            evaluation, runs=options.latency_runs)

        rows = []
        for cand in candidates:
            assert cand.scores is not None and cand.decision is not None
            if cand.decision.passed:
                write_bytes(cand.final_path, cand.data, force=options.force)
                say(f"wrote {cand.final_path}")
            else:
                say(f"NOT writing {cand.spec.name}: {cand.decision.reason}")
            rows.append(_variant_row(cand, latency[cand.spec.name]))
        float_row = ModelResult(
            name="float", path=str(options.model.resolve()), size_bytes=len(reference_bytes),
            gzip_bytes=gzip_size(reference_bytes),
            sparsity=_sparsity(model, weights_to_measure),
            # The reference compared with itself: 1.0 and 0.0 by definition (the unpruned float32
            # variant, the same bytes, is measured and shows the same).
            iou=reference_scores.iou, f1=reference_scores.f1, agreement_iou=1.0, max_prob_diff=0.0,
            p50_ms=latency["float"], status="reference",
            reason="the .keras model as given, converted to float32 .tflite",
            extra={"keras_bytes": options.model.stat().st_size, "images": reference_scores.images,
                   **verify.io_summary(reference_path)},
        )

    report = ExportReport(
        float=float_row,
        variants=tuple(rows),
        gate=_gate(candidates, options, evaluation.ground_truth),
        evaluation=evaluation.to_dict(),
        calibration=None if calibration is None else calibration.to_dict(),
        pruning=None if pruned is None else {**pruned.to_dict(), "finetune_set": tuning.to_dict()},
        qat=None if qat is None else {**qat.to_dict(), "finetune_set": tuning.to_dict()},
        options=options.to_dict(),
        versions=tool_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1),
        notes=tuple(notes + ([qat.note] if qat is not None and qat.note else [])),
    )
    report.save(options.out, force=options.force)
    say(f"wrote {options.report_json_path} and {options.report_md_path}")
    return report


def _compress(model: Any, size: int, tuning: ImageSet | None, options: ExportOptions,
              say: Progress) -> tuple[PruneResult | None, QatResult | None]:
    """Pruning then QAT, as asked; each on its own copy of the model."""
    pruned = qat = None
    if tuning is None:
        return None, None
    plan = plan_finetune(tuning, epochs=options.finetune_epochs, steps=options.finetune_steps,
                         batch_size=options.finetune_batch, learning_rate=options.finetune_lr)
    if options.prune is not None:
        say(f"pruning to {options.prune:.0%} sparsity: {plan.total_steps} fine-tune steps on "
            f"{len(tuning)} images")
        pruned = prune(model, tuning, size, target=options.prune, plan=plan, seed=options.seed,
                       progress=say)
        say(f"pruned: sparsity {pruned.overall:.4f} over {len(pruned.sparsity.layers)} kernels")
    if options.qat:
        say(f"quantization-aware training: {plan.total_steps} fine-tune steps on {len(tuning)} images")
        qat = quantize_aware(pruned.model if pruned is not None else model, tuning, size, plan=plan,
                             preserve_sparsity=pruned is not None, seed=options.seed, progress=say)
    return pruned, qat


def _prunable_weights(model: Any) -> dict[str, str]:
    """``{layer: kernel attribute}`` of the kernels pruning would touch (sparsity of an unpruned model)."""
    try:
        chosen, _ = layers_to_prune(model)
    except InputError:  # nothing prunable: the sparsity column stays empty
        return {}
    weights = {}
    for name in chosen:
        layer = model.get_layer(name)
        weights[name] = "pointwise_kernel" if type(layer).__name__ == "SeparableConv2D" else "kernel"
    return weights


def _sparsity(model: Any, weights: dict[str, str]) -> float | None:
    return measure_sparsity(model, weights).overall if weights else None


def _variant_row(cand: _Candidate, p50_ms: float) -> ModelResult:
    scores, decision = cand.scores, cand.decision
    assert scores is not None and decision is not None
    passed = decision.passed
    return ModelResult(
        name=cand.spec.name,
        path=str(cand.final_path.resolve()) if passed else None,
        size_bytes=len(cand.data),
        gzip_bytes=gzip_size(cand.data),
        sparsity=cand.sparsity,
        iou=scores.iou,
        f1=scores.f1,
        agreement_iou=scores.agreement_iou,
        max_prob_diff=scores.max_prob_diff,
        p50_ms=p50_ms,
        status=WRITTEN if passed else REJECTED,
        reason=decision.reason,
        extra={"built_with": cand.built_with, "images": scores.images,
               **verify.io_summary(cand.work_path)},
    )


def _gate(candidates: list[_Candidate], options: ExportOptions, ground_truth: bool) -> GateResult:
    failed = [c for c in candidates if c.decision is not None and not c.decision.passed]
    mode = "IoU and agreement" if ground_truth else "agreement only (no ground truth in the evaluation set)"
    if failed:
        reason = "; ".join(f"{c.spec.name}: {c.decision.reason}" for c in failed if c.decision)
    else:
        reason = f"all {len(candidates)} variant(s) within the gate"
    if not ground_truth:
        reason += " (IoU not checked: the evaluation images have no ground truth)"
    return GateResult(passed=not failed, max_drop=options.max_drop, min_agreement=options.min_agreement,
                      reason=reason, mode=mode)


def _notes_on_sets(evaluation: ImageSet, calibration: ImageSet | None) -> list[str]:
    notes = []
    if not evaluation.ground_truth:
        notes.append("the evaluation images have no masks: IoU/F1 are not measured and the gate "
                     "checks agreement with the float model only")
    if calibration is not None and calibration.root.resolve() == evaluation.root.resolve() and \
            set(s.id for s in calibration.samples) & set(s.id for s in evaluation.samples):
        notes.append("some calibration images are also evaluation images: the int8 numbers may be "
                     "optimistic")
    return notes
