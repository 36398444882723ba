"""Keras -> .tflite for each variant of :data:`hairseg_edge.export.options.VARIANTS`.

The converter settings come from the variant's row in the table, never from ad-hoc flags, and every
model leaves here with the preprocessing contract embedded in its metadata
(:func:`hairseg_edge.tflite_meta.embed_contract`), so the device runtime knows how to feed it.
"""

from __future__ import annotations

import gzip
import sys
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from hairseg_edge.contract import Contract
from hairseg_edge.errors import InputError
from hairseg_edge.runtime import native_stderr, native_verbose
from hairseg_edge.tflite_meta import embed_contract
from hairseg_edge.training.keras_compat import keras, tf

from .keras_models import batch_size_of, input_size_of
from .options import IOType, VariantSpec

RepresentativeDataset = Callable[[], Iterator[list[np.ndarray]]]

_IO_DTYPES = {IOType.UINT8: tf.uint8, IOType.INT8: tf.int8, IOType.FLOAT32: tf.float32}


def convert(model: keras.Model, spec: VariantSpec, *, io: IOType = IOType.UINT8,
            representative: RepresentativeDataset | None = None) -> bytes:
    """Convert a batch-1 Keras model into ``spec``'s variant; returns the .tflite bytes with the
    contract embedded.

    Raises:
        ValueError: the model's batch size is not 1 (fix it with ``with_batch_size_one``).
        InputError: ``spec`` needs calibration and ``representative`` is None.
    """
    if batch_size_of(model) != 1:
        raise ValueError(f"convert a batch-1 model (got batch size {batch_size_of(model)})")
    if spec.needs_calibration and representative is None:
        raise InputError(f"the {spec.name} variant needs calibration images")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.float16_weights:
        converter.target_spec.supported_types = [tf.float16]
    if spec.integer_only:
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _IO_DTYPES[io]
        converter.inference_output_type = _IO_DTYPES[io]
    with warnings.catch_warnings():
        # The int8 converter warns about "statistics for quantized inputs" even though the
        # representative data set supplies them; it is harmless (see KNOWN-GROUND) and confusing.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        # The converter's C++ side logs "fully_quantize: 0, inference_type: 6, ..." and MLIR pass
        # notes on fd 2: kept from the user unless `hairseg-edge -v`, but never lost on failure.
        native: list[str] = []
        try:
            with native_stderr() as native:
                model_bytes = converter.convert()
        except Exception:
            _echo(native, always=True)
            raise
        _echo(native)
    return embed_contract(model_bytes, Contract(input_size=input_size_of(model)))


def _echo(lines: list[str], *, always: bool = False) -> None:
    if always or native_verbose():
        for line in lines:
            print(line, file=sys.stderr)


def gzip_size(data: bytes) -> int:
    """Size after gzip -9: what pruning's zeros buy on the wire and in app bundles."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))

