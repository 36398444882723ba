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
