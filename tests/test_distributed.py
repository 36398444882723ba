"""tf.distribute through the product's own code: TF_CONFIG checks, mirrored on two logical CPUs, a real
two-worker job on localhost (slow), its kill-and-resume (slow), the Kubeflow manifest, data on ram://."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hairseg_edge.synth import make_dataset

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dist") / "data", n=40, size=[(72, 72), (64, 96)], seed=3)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.pop("TF_CONFIG", None)
    env["COLUMNS"] = "200"  # rich wraps lines at the terminal width
    env.update(extra)
    return env


def _train_cmd(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hairseg_edge", "train", "--data", str(data), "--arch", "mobile_unet",
            "--img-size", "32", "--width", "0.25", "--epochs", str(epochs), "--batch", "2",
            "--out", str(out), *extra]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start_workers(cmd: list[str], tmp: Path, tag: str) -> list[subprocess.Popen]:
    """Two workers on localhost, each with its own TMPDIR (to see that the non-chief cleans up)."""
    ports = _free_ports(2)
    procs = []
    for k in range(2):
        tmpdir = tmp / f"tmp{k}"
        tmpdir.mkdir(exist_ok=True)
        log = open(tmp / f"{tag}-worker{k}.log", "w")
        procs.append(subprocess.Popen(cmd, env=_env(TF_CONFIG=_tf_config(ports, k), TMPDIR=str(tmpdir),
                                                    HAIRSEG_HEALTH_INTERVAL="3", HAIRSEG_CLUSTER_WAIT="120"),
                                      stdout=log, stderr=subprocess.STDOUT, text=True))
    return procs


def _wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.time())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# --- TF_CONFIG ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, problem", [
    ("{not json", "not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "task index 3"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "parameter servers"),
])
def test_malformed_tf_config_is_named(config, problem):
    from hairseg_edge.errors import InputError
    from hairseg_edge.training.distribute import cluster_role

    with pytest.raises(InputError, match="malformed TF_CONFIG") as err:
        cluster_role({"TF_CONFIG": config})
    assert problem in str(err.value)


def test_cluster_roles_name_one_chief_and_its_shards():
    from hairseg_edge.training.distribute import cluster_role

    two = {"worker": ["a:1", "b:1"]}
    roles = [cluster_role({"TF_CONFIG": json.dumps({"cluster": two, "task": {"type": "worker", "index": k}})})
             for k in range(2)]
    assert [r.is_chief for r in roles] == [True, False]
    assert [r.pipeline_index for r in roles] == [0, 1] and roles[0].workers == 2
    with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
    worker0 = cluster_role({"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "worker",
                                                                                       "index": 0}})})
    assert not worker0.is_chief and worker0.pipeline_index == 1 and worker0.workers == 3
    assert cluster_role({}) is None


def test_malformed_tf_config_in_the_cli_is_one_line_exit_2(tiny_data, tmp_path):
    proc = subprocess.run(_train_cmd(tiny_data, tmp_path / "run", 1), env=_env(TF_CONFIG="{oops"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed TF_CONFIG" in lines[0], proc.stderr


def test_a_worker_whose_peer_never_comes_up_stops_in_one_line_exit_2(tiny_data, tmp_path):
    ports = _free_ports(2)
    proc = subprocess.run(_train_cmd(tiny_data, tmp_path / "run", 1),
                          env=_env(TF_CONFIG=_tf_config(ports, 0), HAIRSEG_CLUSTER_WAIT="4"),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hairseg-edge:")]
    assert len(errors) == 1 and "did not all come up within 4 s" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


# --- mirrored on two logical CPUs, through select_strategy ----------------------------------------------------
def test_mirrored_on_two_logical_cpus_trains_through_select_strategy(tiny_data, tmp_path):
    """The several-GPU path on a CPU: `--strategy mirrored` with HAIRSEG_CPU_REPLICAS=2, nothing patched."""
    out = tmp_path / "run"
    proc = subprocess.run(_train_cmd(tiny_data, out, 1, "--strategy", "mirrored", "--steps-per-epoch", "3"),
                          env=_env(HAIRSEG_CPU_REPLICAS="2", COLUMNS="200"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 replica(s)" in " ".join(proc.stdout.split()), proc.stdout
    history = json.loads((out / "history.json").read_text())
    # Linear scaling: two replicas double the global batch and the rate (epoch 1 is the warm-up's half).
    assert history[0]["lr"] == pytest.approx(3e-3 * 2 / 2)
    assert (out / "model.keras").is_file()


def test_select_strategy_refuses_what_it_cannot_build(monkeypatch):
    from hairseg_edge.errors import InputError
    from hairseg_edge.training.distribute import select_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert select_strategy("auto").num_replicas_in_sync == 1
    with pytest.raises(InputError, match="needs TF_CONFIG"):
        select_strategy("multiworker")
    monkeypatch.setenv("HAIRSEG_CPU_REPLICAS", "two")
    with pytest.raises(InputError, match="HAIRSEG_CPU_REPLICAS"):
        select_strategy("mirrored")


# --- two workers on localhost ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_on_localhost_train_to_completion(tiny_data, tmp_path):
    out = tmp_path / "run"
    procs = _start_workers(_train_cmd(tiny_data, out, 2), tmp_path, "run")
    codes = _wait_all(procs, timeout=300)
    logs = [(tmp_path / f"run-worker{k}.log").read_text() for k in range(2)]
    assert codes == [0, 0], logs
    assert all("2 replica(s)" in " ".join(log.split()) for log in logs), logs
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert (out / "model.keras").is_file() and (out / "train_options.json").is_file()
    # Only the chief wrote the run folder; the other worker's private folder is gone.
    assert not list((tmp_path / "tmp1").iterdir())


@pytest.mark.slow
def test_kill_one_worker_mid_epoch_then_resume_both(tiny_data, tmp_path):
    out = tmp_path / "run"
    epochs = 4
    procs = _start_workers(_train_cmd(tiny_data, out, epochs), tmp_path, "first")
    state_file = out / "state.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # the first epoch saved, the second under way
            if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 0:
                break
            assert all(p.poll() is None for p in procs), "a worker ended before the kill"
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished in time")
        time.sleep(1.0)
        procs[1].send_signal(signal.SIGKILL)
        chief_code = procs[0].wait(timeout=120)  # the survivor notices the lost peer and stops
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    chief_log = (tmp_path / "first-worker0.log").read_text()
    assert chief_code == 2, chief_log[-3000:]
    assert "restart every worker with --resume" in chief_log and "Traceback" not in chief_log
    saved = json.loads(state_file.read_text())
    done = saved["epoch"] + 1
    assert 1 <= done < epochs, saved
    before = saved["history"]

    procs = _start_workers(_train_cmd(tiny_data, out, epochs, "--resume"), tmp_path, "resume")
    codes = _wait_all(procs, timeout=300)
    logs = [(tmp_path / f"resume-worker{k}.log").read_text() for k in range(2)]
    assert codes == [0, 0], logs
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    assert history[:done] == before  # the finished epochs are kept, not redone


# --- the Kubeflow manifest -----------------------------------------------------------------------------------
def test_kubeflow_tfjob_manifest_runs_the_documented_command():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((REPO / "examples" / "kubeflow" / "tfjob.yaml").read_text())
    assert doc["apiVersion"] == "kubeflow.org/v1" and doc["kind"] == "TFJob"
    worker = doc["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] >= 2 and worker["restartPolicy"] in ("OnFailure", "ExitCode")
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"  # the operator injects TF_CONFIG into this container
    assert container["command"][:2] == ["sh", "-c"]
    script = container["command"][2]
    # A restarted pod resumes the run it finds on the shared volume; a first start begins it.
    assert "state.json" in script and "--resume" in script
    command = shlex.split(script.strip().split("\n")[-1].replace("$RESUME", ""))
    assert command[:2] == ["hairseg-edge", "train"]
    out = command[command.index("--out") + 1]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(out.startswith(m) for m in mounts), "the run folder must sit on the shared volume"
    from hairseg_edge.cli import app
    from typer.main import get_command

    options = {o for p in get_command(app).commands["train"].params for o in p.opts}
    assert {a for a in command[2:] if a.startswith("--")} <= options
    assert "docs/distributed.md" in (REPO / "README.md").read_text()


# --- data on shared storage: --data through tf.io.gfile, tested on TensorFlow's in-memory ram:// -----------
def _copy_to_ram(src: Path, url: str) -> str:
    """Write the tree under ``src`` to ``url`` (a ram:// folder) with tf.io.gfile, as an upload would."""
    from hairseg_edge.training.keras_compat import tf

    tf.io.gfile.makedirs(url)
    for p in sorted(src.rglob("*")):
        target = f"{url}/{p.relative_to(src).as_posix()}"
        if p.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            with tf.io.gfile.GFile(target, "wb") as fh:
                fh.write(p.read_bytes())
    return url


def _png_header_bomb(width: int, height: int) -> bytes:
    """A tiny complete PNG whose header announces ``width x height`` (as in test_reliability.py)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("layout", ["folder", "celebamask-hq"])
def test_data_on_ram_lists_splits_and_decodes_like_the_same_local_folder(tmp_path, layout):
    import numpy as np

    from hairseg_edge.data import load_sample, open_dataset
    from hairseg_edge.training.gfile import GFILE, filesystem_for

    local = make_dataset(tmp_path / layout, n=24, layout=layout, size=[(64, 64), (48, 80)] if layout == "folder"
                         else 64, seed=5)
    url = _copy_to_ram(local, f"ram://{tmp_path.name}/{layout}")
    assert filesystem_for(url) is GFILE and filesystem_for(str(local)) is not GFILE
    on_ram, on_disk = open_dataset(url, fs=GFILE), open_dataset(local)
    assert on_ram.layout == on_disk.layout == layout
    assert on_ram.ids == on_disk.ids and len(on_ram) == 24
    for a, b in zip(on_ram.split(0.25), on_disk.split(0.25)):
        assert a.ids == b.ids and len(a) > 0
    assert str(on_ram.samples[0].image_path).startswith(url + "/")
    for remote, here in zip(on_ram, on_disk):
        (rgb_r, mask_r), (rgb_l, mask_l) = load_sample(remote), load_sample(here)
        assert np.array_equal(rgb_r, rgb_l) and np.array_equal(mask_r, mask_l)
    # The device side (eval, run) reads local folders only, and says so in one line.
    from hairseg_edge.errors import InputError

    with pytest.raises(InputError, match=r"^ram://.*: a URL: only training reads"):
        open_dataset(url)


def test_train_cli_trains_from_ram_data(tmp_path):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app

    local = make_dataset(tmp_path / "src", n=16, size=[(72, 72), (64, 96)], seed=3)
    url = _copy_to_ram(local, f"ram://{tmp_path.name}/hair-set")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", url, "--arch", "mobile_unet", "--img-size", "32",
                                      "--width", "0.25", "--epochs", "1", "--batch", "2", "--steps-per-epoch",
                                      "3", "--strategy", "default", "--out", str(out)])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert (out / "model.keras").is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and 0.0 <= history[0]["val_iou_hair-set"] <= 1.0
    assert json.loads((out / "train_options.json").read_text())["data"] == [url]


def test_a_bomb_or_a_corrupt_file_on_ram_is_the_local_one_line_error_naming_its_url(tmp_path, one_line_error):
    from typer.testing import CliRunner

    from hairseg_edge.cli import app
    from hairseg_edge.data import load_sample, open_dataset
    from hairseg_edge.errors import InputError
    from hairseg_edge.training.gfile import GFILE

    local = make_dataset(tmp_path / "src", n=6, size=48, seed=4, image_format="png")
    bomb = local / "images" / "synth_00001.png"
    bomb.write_bytes(_png_header_bomb(20_000, 20_000))
    cut = local / "images" / "synth_00002.png"
    cut.write_bytes(cut.read_bytes()[:-20])  # ends before its IEND chunk
    url = _copy_to_ram(local, f"ram://{tmp_path.name}/broken")
    remote, here = open_dataset(url, fs=GFILE), open_dataset(local)
    for k in (1, 2):
        with pytest.raises(InputError) as on_disk:
            load_sample(here.samples[k])
        with pytest.raises(InputError) as on_ram:
            load_sample(remote.samples[k])
        assert on_ram.value.path == f"{url}/images/{Path(on_disk.value.path).name}"
        assert str(on_ram.value) == str(on_disk.value).replace(str(local), url)
    assert "too large" in str(on_ram.value) or "truncated" in str(on_ram.value)

    # In training, found mid-epoch inside tf.data: the same one line, exit 2.
    result = CliRunner().invoke(app, ["train", "--data", url, "--arch", "mobile_unet", "--img-size", "32",
                                      "--width", "0.25", "--epochs", "1", "--batch", "2", "--augment", "none",
                                      "--strategy", "default", "--out", str(tmp_path / "run")])
    line = one_line_error(result, url + "/images/synth_0000")
    assert "too large" in line or "truncated" in line


def test_out_as_a_url_is_refused_in_one_line(tmp_path):
    from hairseg_edge.errors import InputError
    from hairseg_edge.training.options import TrainOptions

    with pytest.raises(InputError, match=r"^gs://bucket/run: --out must be a local folder"):
        TrainOptions(data=(str(tmp_path),), out="gs://bucket/run")


def test_gfile_reader_names_a_missing_file_or_a_folder_like_the_local_reader(tmp_path):
    from hairseg_edge.errors import InputError
    from hairseg_edge.imageio import read_file_bytes
    from hairseg_edge.training.gfile import GFILE
    from hairseg_edge.training.keras_compat import tf

    url = f"ram://{tmp_path.name}/files"
    tf.io.gfile.makedirs(f"{url}/sub")
    (tmp_path / "sub").mkdir()
    for name in ("missing.png", "sub"):
        with pytest.raises(InputError) as local:
            read_file_bytes(tmp_path / name, "an image")
        with pytest.raises(InputError) as remote:
            GFILE.read_bytes(f"{url}/{name}", "an image")
        assert str(remote.value) == str(local.value).replace(str(tmp_path), url)
    assert not GFILE.isfile(f"{url}/sub") and not GFILE.isfile(f"{url}/missing.png")


def test_a_scheme_tensorflow_cannot_read_is_one_line_naming_the_url():
    from hairseg_edge.data import open_dataset
    from hairseg_edge.errors import InputError
    from hairseg_edge.training.gfile import filesystem_for

    with pytest.raises(InputError, match=r"^nosuchfs://bucket/hair: TensorFlow has no filesystem for this URL"):
        open_dataset("nosuchfs://bucket/hair", fs=filesystem_for("nosuchfs://bucket/hair"))
