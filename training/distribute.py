"""Where a training run executes: one device, several replicas on one host, or several hosts.

* ``default``: one device (the CPU, or the one GPU).
* ``mirrored``: every local GPU; without GPUs, the CPU split into ``HAIRSEG_CPU_REPLICAS`` logical
  devices (default 1), which is how CI proves the multi-replica path on a CPU-only machine.
* ``multiworker``: one process per host, described by ``TF_CONFIG`` (docs/distributed.md).
* ``auto``: ``multiworker`` when ``TF_CONFIG`` is set, ``mirrored`` with more than one GPU, else ``default``.

TensorFlow only accepts a collective (multi-worker) strategy or a logical device split before its
context starts: nothing here calls ``tf.config.list_logical_devices``, creates a tensor or a model
before the strategy exists (``list_physical_devices`` does not start the context).

Global batch and learning rate: ``--batch`` is per replica, so a step sees ``--batch x replicas``
images, and the peak learning rate is ``--lr x replicas`` (the linear scaling rule, Goyal et al. 2017,
with the schedule's one-epoch warm-up). One replica trains exactly as before.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from hairseg_edge.errors import HairsegError, InputError, reason

from .keras_compat import tf

#: Seconds a worker waits for all its peers to come up before it gives up (one line, exit 2).
CLUSTER_WAIT_ENV = "HAIRSEG_CLUSTER_WAIT"
DEFAULT_CLUSTER_WAIT = 300
#: Seconds between two checks that every peer is alive; a lost peer stops the job within about this.
HEALTH_INTERVAL_ENV = "HAIRSEG_HEALTH_INTERVAL"
DEFAULT_HEALTH_INTERVAL = 10
#: Logical CPU devices for ``mirrored`` on a machine without GPUs.
CPU_REPLICAS_ENV = "HAIRSEG_CPU_REPLICAS"

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


class ClusterError(HairsegError):
    """A multi-worker job cannot start or cannot go on: peers unreachable or lost (exit 2, one line)."""

    exit_code = 2


class PeerLostError(ClusterError):
    """A peer worker went away during training: this worker's collective runtime is broken, so the
    command leaves without the interpreter's teardown (see ``hairseg-edge train``)."""


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in a multi-worker job, read from ``TF_CONFIG``."""

    task_type: str
    index: int
    workers: int  # chief + worker tasks

    @property
    def is_chief(self) -> bool:
        """The chief writes the run folder: the ``chief`` task, or worker 0 when there is none."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self._has_chief)

    _has_chief: bool = False

    @property
    def pipeline_index(self) -> int:
        """This worker's input shard: the chief first, then the workers in order."""
        return self.index + (1 if self._has_chief and self.task_type == "worker" else 0)


def cluster_role(environ: Mapping[str, str] | None = None) -> ClusterRole | None:
    """The role ``TF_CONFIG`` gives this process, None without it; an InputError when it is malformed."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return None

    def bad(problem: str) -> InputError:
        return InputError(f"malformed TF_CONFIG: {problem} (see docs/distributed.md)")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise bad('no "cluster" object')
    cluster, task = config["cluster"], config.get("task")
    for job, addresses in cluster.items():
        if job not in ("chief", "worker", "evaluator", "ps"):
            raise bad(f"unknown job {job!r} in the cluster")
        if job == "ps":
            raise bad("parameter servers are not supported; use chief/worker tasks")
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
            raise bad(f'cluster "{job}" must be a list of "host:port" strings')
    if not cluster.get("worker") and not cluster.get("chief"):
        raise bad('the cluster lists no "worker" (or "chief")')
    if not isinstance(task, dict) or task.get("type") not in cluster or task.get("type") == "evaluator":
        raise bad('"task" must name a "type" of the cluster (chief or worker) and an "index"')
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task["type"]]):
        raise bad(f'task index {index!r} is not a position in cluster "{task["type"]}"')
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return ClusterRole(task["type"], index, workers, _has_chief=bool(cluster.get("chief")))


def _positive_int_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {text!r}")
    return int(text)


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy that waits a bounded time for its peers and notices a lost one.

    The strategy detects lost peers through TensorFlow's coordination service, whose defaults wait up to
    an hour for the cluster and leave a worker's exit to look like a crash to the others. It is
    configured here first, with bounded waits and a shutdown barrier (the strategy keeps a service it
    finds configured); TensorFlow offers this only on its eager context object.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    wait = _positive_int_from_env(CLUSTER_WAIT_ENV, DEFAULT_CLUSTER_WAIT)
    interval = _positive_int_from_env(HEALTH_INTERVAL_ENV, DEFAULT_HEALTH_INTERVAL)
    spec = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in ("chief", "worker") if job in spec.jobs]
    if context.context().coordination_service is None:
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
            cluster_register_timeout_in_ms=wait * 1000, heartbeat_timeout_in_ms=interval * 1000,
            shutdown_barrier_timeout_in_ms=wait * 1000, coordinated_jobs=jobs)
    # TensorFlow blocks inside the constructor, holding the interpreter, until every peer has
    # registered: a peer that never starts would hang this worker for good. Meet the peers first.
    rendezvous(spec.as_dict(), cluster_role(), wait)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:
        if "Collective ops must be configured at program startup" in str(exc):
            raise ClusterError("the multi-worker strategy must be created before TensorFlow starts; "
                               "run one job per process") from None
        raise ClusterError(f"TF_CONFIG: cannot start the multi-worker job ({reason(exc)})") from None
    except (tf.errors.OpError, ValueError) as exc:  # address in use, unresolvable host, ...
        raise ClusterError(f"TF_CONFIG: cannot start the multi-worker job ({reason(exc)})") from None


def rendezvous(cluster: dict[str, list[str]], role: ClusterRole | None, wait: float) -> None:
    """Wait until every chief/worker task of ``cluster`` is up, at most ``wait`` seconds (ClusterError).

    Each task listens on its own ``TF_CONFIG`` port (TensorFlow's server takes it over afterwards) and
    connects to every peer's; it goes on once it has reached every peer and every peer has reached it,
    so no task leaves the meeting before the others have seen it.
    """
    assert role is not None
    tasks = [(job, k, address) for job in ("chief", "worker") for k, address in enumerate(cluster.get(job, []))]
    mine = next(a for job, k, a in tasks if (job, k) == (role.task_type, role.index))
    peers = [a for job, k, a in tasks if (job, k) != (role.task_type, role.index)]
    deadline = time.monotonic() + wait
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(mine.rpartition(":")[2])))
    except OSError as exc:
        listener.close()
        raise ClusterError(f"TF_CONFIG: cannot listen on {mine} ({exc.strerror or exc})") from None
    listener.listen(len(peers) + 1)
    listener.settimeout(0.2)
    reached: set[str] = set()
    seen = 0
    try:
        while len(reached) < len(peers) or seen < len(peers):
            if time.monotonic() > deadline:
                missing = ", ".join(a for a in peers if a not in reached) or "a peer's connection back"
                raise ClusterError(f"TF_CONFIG: the other workers did not all come up within {wait:g} s "
                                   f"(waiting for {missing}; set {CLUSTER_WAIT_ENV} to wait longer)")
            for address in peers:
                if address in reached:
                    continue
                host, _, port = address.rpartition(":")
                try:
                    socket.create_connection((host, int(port)), timeout=1.0).close()
                    reached.add(address)
                except OSError:
                    pass
            try:
                conn, _ = listener.accept()
                conn.close()
                seen += 1
            except (TimeoutError, socket.timeout):
                pass
    finally:
        listener.close()


def _split_cpu(replicas: int) -> list[str]:
    """``replicas`` logical CPU devices (before the context starts), as MirroredStrategy device names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError:  # the context already started: only possible when nothing changes
        if len(tf.config.list_logical_devices("CPU")) != replicas:
            raise ClusterError(f"{CPU_REPLICAS_ENV}={replicas}: TensorFlow already started in this process "
                               "with another CPU split") from None
    return [f"/cpu:{k}" for k in range(replicas)]


def select_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The distribution strategy for ``name`` (see the module docstring); creates it first thing."""
    if name not in STRATEGIES:
        raise InputError(f"unknown --strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    role = cluster_role() if name in ("auto", "multiworker") else None  # malformed: one line here
    if name == "multiworker" or (name == "auto" and role is not None):
        if role is None:
            raise InputError("--strategy multiworker needs TF_CONFIG (see docs/distributed.md)")
        return _multi_worker_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        if gpus:
            return tf.distribute.MirroredStrategy()
        replicas = _positive_int_from_env(CPU_REPLICAS_ENV, 1)
        return tf.distribute.MirroredStrategy(_split_cpu(replicas))
    return tf.distribute.get_strategy()


def is_peer_failure(exc: BaseException) -> bool:
    """Whether an error out of ``fit`` means a peer worker went away (collectives aborted)."""
    return isinstance(exc, (tf.errors.UnavailableError, tf.errors.CancelledError,
                            tf.errors.DeadlineExceededError, tf.errors.AbortedError)) or (
        isinstance(exc, tf.errors.OpError) and "is down" in str(exc))


def use_mixed_precision(setting: str) -> bool:
    """``on``/``off``, or ``auto``: on when there is a GPU (physical devices: the context stays unstarted)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return bool(tf.config.list_physical_devices("GPU"))
