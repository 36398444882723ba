"""Shared pytest fixtures (owned by the lead; helpers may add clearly marked sections at the end)."""

from __future__ import annotations


# ==================================================================================================
# Synthetic data sets and small image files (added with tests of metrics/synth/contract/data/imageio)
# ==================================================================================================

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def synthetic_folder_dataset(tmp_path: Path) -> Path:
    """A 12-image folder-format data set (mixed 64x64, 48x80, 80x48 sizes, JPEG images)."""
    from hairseg_edge.synth import make_dataset

    return make_dataset(tmp_path / "folder_ds", n=12, size=[(64, 64), (48, 80), (80, 48)], seed=11)


@pytest.fixture
def synthetic_celeba_dataset(tmp_path: Path) -> Path:
    """A 10-image CelebAMask-HQ-layout data set at 64x64 (masks 32x32); ids 4 and 9 have no hair file."""
    from hairseg_edge.synth import make_dataset

    return make_dataset(tmp_path / "celeba_ds", n=10, layout="celebamask-hq", size=64, seed=12)


# ==================================================================================================
# Tiny converted models for packaging and MediaPipe checks (added with test_package.py,
# test_mobile_venv.py and test_core_install.py)
# ==================================================================================================

#: Files of :func:`tiny_packaging_models`, also the names expected in $HAIRSEG_TINY_MODELS.
TINY_PACKAGING_MODELS = ("float32", "int8", "int8_input", "two_channel", "no_contract")
TINY_PACKAGING_SIZE = 64


def _tiny_packaging_model_bytes(kind: str, size: int = TINY_PACKAGING_SIZE) -> bytes:
    """A real converted .tflite: Rescaling(1/255) -> 4x4 average pool -> 3x3 conv -> sigmoid ->
    bilinear 4x upsampling, batch 1, contract embedded (except ``no_contract``).

    The hand-set conv calls dark pixels hair, weighting R, G and B differently (0.6, 0.3, 0.1), so
    a consumer that swapped the channel order, or fed 0..1 instead of 0..255, gets a different mask.
    The pooling keeps the output smooth, like a real model's, so masks follow image regions.
    ``kind``: float32 | int8 (uint8 in/out) | int8_input (int8 in/out, which MediaPipe cannot feed) |
    two_channel (output [1, S, S, 2]) | no_contract (float32 without the hairseg metadata).
    """
    import numpy as np

    from hairseg_edge.contract import Contract
    from hairseg_edge.tflite_meta import embed_contract
    from hairseg_edge.training.keras_compat import keras, tf

    channels = 2 if kind == "two_channel" else 1
    inputs = keras.Input((size, size, 3), batch_size=1)
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.AveragePooling2D(4)(x)
    head = keras.layers.Conv2D(channels, 3, padding="same", activation="sigmoid")
    x = head(x)
    outputs = keras.layers.UpSampling2D(4, interpolation="bilinear")(x)
    model = keras.Model(inputs, outputs)
    gain = 12.0
    kernel = np.zeros((3, 3, 3, channels), np.float32)
    kernel[..., 0] = (-gain * np.array([0.6, 0.3, 0.1], np.float32) / 9.0)[None, None, :]
    if channels == 2:
        kernel[..., 1] = -kernel[..., 0]
    bias = np.full((channels,), 0.35 * gain, np.float32)
    head.set_weights([kernel, bias])

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind in ("int8", "int8_input"):
        from hairseg_edge.synth import render_sample

        def representative():
            for k in range(16):
                rgb, _ = render_sample(np.random.default_rng([5, k]), size, size)
                yield [rgb[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.uint8 if kind == "int8" else tf.int8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    data = converter.convert()
    return data if kind == "no_contract" else embed_contract(data, Contract(input_size=size))


@pytest.fixture(scope="session")
def tiny_packaging_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{kind: path}`` for every kind in :data:`TINY_PACKAGING_MODELS` (64 px, built once).

    Built with TensorFlow where it is installed. Where it is not (the [mobile] venv, which can never
    hold tfmot), the models are read from the folder in ``$HAIRSEG_TINY_MODELS``, which
    tests/test_mobile_venv.py fills from the dev environment; with neither, tests using this skip.
    """
    import importlib.util
    import os

    given = os.environ.get("HAIRSEG_TINY_MODELS")
    if given:
        paths = {kind: Path(given) / f"{kind}.tflite" for kind in TINY_PACKAGING_MODELS}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            pytest.fail(f"$HAIRSEG_TINY_MODELS lacks {', '.join(missing)}")
        return paths
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tiny test models need TensorFlow (the [train] extra) or $HAIRSEG_TINY_MODELS")
    folder = tmp_path_factory.mktemp("tiny_packaging_models")
    paths = {}
    for kind in TINY_PACKAGING_MODELS:
        path = folder / f"{kind}.tflite"
        path.write_bytes(_tiny_packaging_model_bytes(kind))
        paths[kind] = path
    return paths


# ==================================================================================================
# Device runtime, info and bench (added with test_runtime.py, test_info.py, test_bench.py,
# test_peers.py): tiny converted models built in a separate process, and the peer models folder
# ==================================================================================================


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{name: path}`` of the models tests/tiny_tflite_models.py builds (float32, uint8, int8,
    classifier, halfres), converted once per session.

    The converter runs in a child process so this test process never imports TensorFlow (the
    runtime tests check that the device side does not either). TensorFlow is a dev dependency:
    if it is missing the fixture fails rather than silently skipping the runtime tests.
    """
    import json
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("tiny_tflite")
    script = Path(__file__).resolve().with_name("tiny_tflite_models.py")
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"building the tiny test models failed (needs TensorFlow):\n{proc.stderr[-3000:]}")
    return {name: Path(p) for name, p in json.loads((out / "models.json").read_text()).items()}


@pytest.fixture(scope="session")
def peers_dir() -> Path:
    """``../shared/peers`` next to the repo (or ``$HAIRSEG_PEERS``); skips when it is absent."""
    import os

    given = os.environ.get("HAIRSEG_PEERS")
    folder = Path(given) if given else Path(__file__).resolve().parents[1].parent / "shared" / "peers"
    if not folder.is_dir():
        pytest.skip(f"peer models not found at {folder} (set HAIRSEG_PEERS)")
    return folder


# ==================================================================================================
# CLI failure checks (added with test_run.py and test_eval.py)
# ==================================================================================================


@pytest.fixture
def one_line_error():
    """``one_line_error(result, *fragments, code=2)`` for a CliRunner result: asserts the exit code,
    exactly one line on stderr containing every fragment, and no traceback; returns that line."""

    def check(result, *fragments: str, code: int = 2) -> str:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        # A model accepted from its tensor shapes alone (the bare tiny models) adds its own
        # warning line (tests/test_reliability.py checks it); the error is still one line.
        lines = [line for line in result.stderr.strip().splitlines()
                 if not line.startswith("hairseg-edge: warning: ")]
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        return lines[0]

    return check
