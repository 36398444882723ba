#!/usr/bin/env python3
"""``make check-arm64``: prove the Raspberry Pi install and run path on arm64, under qemu emulation.

Raspberry Pi OS 64-bit is Debian bookworm for arm64. This check builds (or reuses, from a cache folder
outside the clone) a bookworm arm64 root with ``debootstrap``, and runs it on this x86 machine through
qemu's user-mode emulation (``binfmt_misc``). Inside it, it does what a Pi user does:

1. creates a virtual environment with the root's own Python 3.11 and installs the project's **core**
   wheel, built from the current tree, with its dependencies from the package index (aarch64 wheels
   only, never a source build); checks that no TensorFlow came with it;
2. runs ``hairseg-edge info``, ``bench --runs 5``, ``run`` on the sample photo and ``eval`` on a small
   generated data set, with the bundled default model (or ``--model``);
3. compares the model inputs the contract prepares on arm64 and on x86 (the sample photo and three
   variants, at three sizes; sha256): they must be identical, since the contract's resize is bit-exact;
4. compares the arm64 mask of the sample photo with the x86 mask of the same wheel and model, run on
   this machine: agreement IoU must be >= 0.99 (``--min-iou``), else exit 1.

The last line says what passed, e.g. ``arm64: install ok, bench ok, run ok, eval ok, 12 model inputs
bit-identical, agreement IoU 1.0000``.

It needs root (chroot, mount), ``binfmt_misc``, ``qemu-user-static`` and ``debootstrap`` (installed with
apt-get when missing) and the network to the Debian mirror (cold cache only) and the Python package
index. Where one of those is missing it prints ONE line saying which and exits 0 (``--no-skip`` turns
that into exit 1, and so does ``CI`` set in the environment on a machine that could emulate: Linux,
root, binfmt_misc in the kernel and qemu installed or installable, see ``could_emulate``). Everything it creates lives in the cache folder, never in the clone:
``$HAIRSEG_ARM64_CACHE`` or ``~/.cache/hairseg-edge/arm64``::

    root-bookworm-arm64/            the arm64 root (reused once complete)
    root-bookworm-arm64.complete    written last: a root without it is rebuilt, not reused
    debs/                           debootstrap's .deb cache
    pip-cache/                      the arm64 pip cache, mounted into the root (fast reruns)
    host/                           the x86 reference: wheel, venv, outputs
    root-bookworm-arm64/opt/hairseg-check/   this run's arm64 venv and outputs (kept until the next run)

Cold cache: 15-20 minutes on 2 cores (debootstrap 10-14); warm: 4-6 minutes. Exit codes: 0 passed or
skipped, 1 a check failed (or a skip where it must not), 2 bad usage.

This script uses the standard library only; numpy/OpenCV work (the agreement IoU, the synthetic data
set) runs in the x86 reference venv through the project's own modules.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: The Raspberry Pi OS 64-bit base: Debian bookworm, arm64. minbase + these packages is all pip needs.
SUITE = "bookworm"
ARCH = "arm64"
VARIANT = "minbase"
ROOT_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_INDEX = "https://pypi.org/simple/"
#: Host tools, with the Debian package that provides each.
HOST_TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap", "chroot": "coreutils"}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")

#: Paths inside the arm64 root.
GUEST_WORK = "/opt/hairseg-check"
GUEST_PIP_CACHE = "/var/cache/hairseg-pip"
GUEST_CA_BUNDLE = "/etc/ssl/certs/hairseg-host-ca-bundle.crt"

#: Distributions that must never be in the core install.
FORBIDDEN_DISTS = ("tensorflow", "tensorflow-cpu", "tf-keras", "tf-nightly", "tensorflow-model-optimization",
                   "keras", "tflite-runtime", "mediapipe")
#: Distributions whose versions each side reports (the core install).
KEY_DISTS = ("hairseg-edge", "ai-edge-litert", "numpy", "opencv-python-headless", "typer")

SAMPLE_PHOTO = REPO / "examples" / "astronaut.png"

#: Per-step time limits (seconds): a hung emulated step must fail the CI job, not eat its budget.
DEBOOTSTRAP_TIMEOUT = 45 * 60
PIP_TIMEOUT = 25 * 60
COMMAND_TIMEOUT = 15 * 60
#: Timed runs for ``bench`` under emulation: enough to exercise it, timing means nothing here.
BENCH_RUNS = 5


# --------------------------------------------------------------------------------------------------
# The emulated Raspberry Pi CPU
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiCpu:
    """The Raspberry Pi CPU the emulation presents: qemu's CPU model and the Pi's /proc/cpuinfo.

    Both matter. qemu's default CPU ("max") has instructions no Pi has (SVE, SME, i8mm), so LiteRT
    would pick kernels a Pi never runs. And qemu-user 7.2 shows the *host's* x86 /proc/cpuinfo to the
    guest, which LiteRT's cpuinfo library parses as ARM and crashes on (SIGSEGV in allocate_tensors);
    a Pi's own cpuinfo text, mounted over it, fixes that and is what the library sees on a real Pi.
    """

    name: str
    qemu_cpu: str
    model: str
    part: str  # "CPU part" of /proc/cpuinfo (0xd08 Cortex-A72, 0xd0b Cortex-A76)
    variant: str
    revision: int
    features: str  # the kernel's HWCAP names for this core

    def cpuinfo(self, processors: Sequence[int]) -> str:
        """/proc/cpuinfo as a Pi's 64-bit kernel writes it, for the host CPUs the guest can use."""
        blocks = [
            f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: 8\nCPU variant\t: {self.variant}\nCPU part\t: {self.part}\n"
            f"CPU revision\t: {self.revision}\n"
            for n in processors
        ]
        return "\n".join(blocks) + f"\nModel\t\t: {self.model}\n"


PI_CPUS = {
    "pi4": PiCpu("pi4", "cortex-a72", "Raspberry Pi 4 Model B Rev 1.4", "0xd08", "0x0", 3,
                 "fp asimd evtstrm crc32 cpuid"),
    "pi5": PiCpu("pi5", "cortex-a76", "Raspberry Pi 5 Model B Rev 1.0", "0xd0b", "0x4", 1,
                 "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                 "asimddp"),
}


def parse_cpu_list(text: str) -> list[int]:
    """CPU indices from sysfs's list format: ``"0-3"`` -> [0, 1, 2, 3], ``"0,2-3"`` -> [0, 2, 3]."""
    found: list[int] = []
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        found.extend(range(int(first), int(last or first) + 1))
    return found


def host_processors() -> list[int]:
    """The CPUs present here, so the Pi cpuinfo lists the same processors as the guest's /sys."""
    try:
        return parse_cpu_list(Path("/sys/devices/system/cpu/present").read_text())
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


class Skip(Exception):
    """A prerequisite is missing on this machine: one line, exit 0 (or 1 with --no-skip)."""


class Failure(Exception):
    """The check ran and something is wrong: exit 1."""


_START = time.monotonic()


def progress(message: str) -> None:
    elapsed = int(time.monotonic() - _START)
    print(f"arm64 [{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------------


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    echo: bool = False,
    cwd: Path | None = None,
) -> str:
    """Run ``cmd``; return its output (stdout and stderr together).

    The output is appended to ``log`` as it comes (``tail -f`` works during debootstrap), and printed
    indented afterwards when ``echo``. On a non-zero exit or a timeout, raise :class:`Failure` naming
    ``what``, with the last lines of output. The command runs in its own process group, killed as a
    whole on a timeout or an interruption: debootstrap's dpkg must not keep writing into a root that
    the next run deletes.
    """
    argv = [os.fspath(c) for c in cmd]
    with contextlib.ExitStack() as stack:
        if log is None:
            sink = stack.enter_context(tempfile.TemporaryFile())
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(log.open("a+b"))
            sink.write(f"$ {shlex.join(argv)}\n".encode())
            sink.flush()
        start = sink.tell()
        try:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise Failure(f"{what}: {exc}") from None
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        sink.seek(start)
        out = sink.read().decode("utf-8", "replace")
        if log is not None:
            sink.write(b"\n")
    if timed_out:
        raise Failure(f"{what}: no result after {timeout / 60:.0f} min{_tail(out)}")
    if echo and out.strip():
        for line in out.rstrip().splitlines():
            print(f"    {line}", flush=True)
    if proc.returncode != 0:
        shown = "" if echo else _tail(out)
        where = f" (log: {log})" if log else ""
        raise Failure(f"{what}: exit code {proc.returncode}{where}{shown}")
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and everything it started (it leads its own process group)."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(out: str, lines: int = 25) -> str:
    kept = out.rstrip().splitlines()[-lines:]
    return "".join(f"\n    {line}" for line in kept)


# --------------------------------------------------------------------------------------------------
# Prerequisites: root, host tools, binfmt_misc, network
# --------------------------------------------------------------------------------------------------


def check_platform() -> None:
    if sys.platform != "linux":
        raise Skip(f"needs Linux (chroot, binfmt_misc); this is {sys.platform}")
    if os.geteuid() != 0:
        raise Skip("needs root (chroot, mount, binfmt_misc); run it as root, e.g. sudo make check-arm64")


def could_emulate() -> tuple[bool, str]:
    """Whether this machine has what emulation needs, looked at without changing anything: Linux, root,
    and either an arm64 CPU or a kernel with binfmt_misc plus qemu-aarch64-static (installed, or
    apt-get to install it). Where this holds, a skip in CI is a failure: the check could have run.
    Returns (answer, the reason in a few words)."""
    if sys.platform != "linux":
        return False, f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return False, "not root"
    if native_arm64():
        return True, "root on an arm64 CPU"
    try:
        kernel = "binfmt_misc" in Path("/proc/filesystems").read_text()
    except OSError:
        kernel = False
    if not kernel and not (BINFMT_DIR / "register").exists():
        return False, "the kernel has no binfmt_misc"
    if shutil.which("qemu-aarch64-static") is None and shutil.which("apt-get") is None:
        return False, "no qemu-aarch64-static and no apt-get to install it"
    return True, "root, binfmt_misc in the kernel, qemu-aarch64-static " + (
        "installed" if shutil.which("qemu-aarch64-static") else "installable with apt-get")


def native_arm64() -> bool:
    return platform.machine() in ("aarch64", "arm64")


def ensure_host_tools() -> None:
    """Find chroot, debootstrap and qemu-aarch64-static; install them with apt-get when missing."""
    wanted = {tool: pkg for tool, pkg in HOST_TOOLS.items()
              if not (native_arm64() and tool.startswith("qemu"))}
    missing = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise Skip(f"needs {' and '.join(missing)} (not installed, and no apt-get to install them)")
    progress(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        run(install, what="apt-get install", env=env, timeout=20 * 60)
    except Failure:
        try:  # a stale package list is the usual reason: refresh it once
            run(["apt-get", "update", "-q"], what="apt-get update", env=env, timeout=10 * 60)
            run(install, what="apt-get install", env=env, timeout=20 * 60)
        except Failure as exc:
            raise Skip(f"needs {' and '.join(missing)}, and apt-get could not install them "
                       f"({_first_line(exc)})") from None
    still = sorted({pkg for tool, pkg in wanted.items() if shutil.which(tool) is None})
    if still:
        raise Skip(f"needs {' and '.join(still)}, still missing after apt-get install")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class Binfmt:
    """How arm64 binaries run here: natively, or through a registered qemu interpreter."""

    interpreter: str | None  # host path of the qemu interpreter; None when the host is arm64
    fix_binary: bool  # the kernel opened the interpreter at registration (flag F): no copy in the root


def ensure_binfmt() -> Binfmt:
    """Mount binfmt_misc and register qemu-aarch64 from qemu-user-static's binfmt.d file if needed."""
    if native_arm64():
        return Binfmt(None, True)
    if not (BINFMT_DIR / "register").exists():
        try:
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", os.fspath(BINFMT_DIR)],
                           check=True, capture_output=True, timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise Skip("needs binfmt_misc for qemu emulation, and it cannot be mounted here "
                       f"({detail.decode(errors='replace').strip() or _first_line(exc)})") from None
    entry = BINFMT_DIR / "qemu-aarch64"
    if not entry.exists():
        if not BINFMT_CONF.exists():
            raise Skip(f"needs {BINFMT_CONF} (from qemu-user-static) to register arm64 emulation")
        rule = next((ln.strip() for ln in BINFMT_CONF.read_text().splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")), "")
        try:
            (BINFMT_DIR / "register").write_text(rule)
        except OSError as exc:
            if not entry.exists():  # another process may have registered it meanwhile
                raise Skip(f"cannot register qemu-aarch64 in binfmt_misc ({exc.strerror})") from None
        progress("registered qemu-aarch64 in binfmt_misc")
    status = {}
    for line in entry.read_text().splitlines():
        key, _, value = line.partition(" ")  # "enabled", "interpreter PATH", "flags: POF"
        status[key.rstrip(":")] = value.strip() if value else key
    if "enabled" not in status:
        raise Skip("the qemu-aarch64 binfmt_misc entry is disabled "
                   "(echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64)")
    interpreter = status.get("interpreter")
    if not interpreter:
        raise Skip("the qemu-aarch64 binfmt_misc entry names no interpreter")
    return Binfmt(interpreter, "F" in status.get("flags", ""))


def check_reachable(url: str, what: str, ca_bundle: Path | None) -> None:
    """Skip when ``url`` cannot be fetched: no network to the registry means nothing to prove."""
    context = ssl.create_default_context(cafile=os.fspath(ca_bundle) if ca_bundle else None)
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "hairseg-edge-check-arm64"})
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as response:
            response.read(1024)
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Skip(f"needs the network to {what} ({url}: {reason})") from None


def host_ca_bundle() -> Path | None:
    """The CA bundle this host trusts (a proxy's CA included), to copy into the root for pip."""
    candidates = [*(os.environ.get(name) for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")),
                  ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


# --------------------------------------------------------------------------------------------------
# The cache: a lock, the arm64 root, mounts
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """One check at a time per cache folder (two would debootstrap and mount over each other)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another arm64 check using {cache}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def mounts_under(path: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo, or ``mountinfo``)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape")
    prefix = os.fspath(path).rstrip("/")
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        # The kernel writes space, tab, newline and backslash in paths as octal escapes (\040).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.add(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", os.fspath(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", os.fspath(point)], capture_output=True, check=False)


def remove_tree(path: Path) -> None:
    """Delete ``path``, never following a bind mount out of it (an unmounted /dev would be wiped)."""
    if not path.exists():
        return
    unmount_all(path)
    left = mounts_under(path)
    if left:
        raise Failure(f"cannot delete {path}: still mounted at {', '.join(map(str, left))}")
    run(["rm", "-rf", "--one-file-system", os.fspath(path)], what=f"delete {path}")


@dataclass(frozen=True)
class RootRecipe:
    """What the cached root was built from; a root built from another recipe is rebuilt."""

    suite: str = SUITE
    arch: str = ARCH
    variant: str = VARIANT
    packages: tuple[str, ...] = ROOT_PACKAGES
    mirror: str = DEFAULT_MIRROR

    def to_dict(self) -> dict[str, object]:
        return {"suite": self.suite, "arch": self.arch, "variant": self.variant,
                "packages": list(self.packages), "mirror": self.mirror}


def root_is_complete(root: Path, marker: Path, recipe: RootRecipe) -> bool:
    if not (root.is_dir() and marker.is_file()):
        return False
    try:
        built = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return {k: built.get(k) for k in recipe.to_dict()} == recipe.to_dict()


def ensure_root(cache: Path, recipe: RootRecipe, ca_bundle: Path | None) -> Path:
    """The arm64 root, reused when its completion marker matches ``recipe``, else built afresh."""
    root = cache / f"root-{recipe.suite}-{recipe.arch}"
    marker = cache / f"{root.name}.complete"
    if root_is_complete(root, marker, recipe):
        progress(f"reusing the {recipe.suite} {recipe.arch} root at {root}")
        return root
    release = f"{recipe.mirror.rstrip('/')}/dists/{recipe.suite}/Release"
    check_reachable(release, "the Debian mirror", ca_bundle)
    marker.unlink(missing_ok=True)
    if root.exists():
        progress(f"removing the incomplete root at {root}")
        remove_tree(root)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log = cache / "debootstrap.log"
    log.unlink(missing_ok=True)
    progress(f"building a Debian {recipe.suite} {recipe.arch} root with debootstrap "
             f"(about 10 min; log: {log})")
    started = time.monotonic()
    run(["debootstrap", f"--arch={recipe.arch}", f"--variant={recipe.variant}", f"--cache-dir={debs}",
         f"--include={','.join(recipe.packages)}", recipe.suite, os.fspath(root), recipe.mirror],
        what="debootstrap", log=log, timeout=DEBOOTSTRAP_TIMEOUT)
    unmount_all(root)  # debootstrap may leave /proc or /sys mounted
    # Keep the root small: the .debs are cached in debs/ already.
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    built = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    marker.write_text(json.dumps({**recipe.to_dict(), "built": built}, indent=1))  # last: the root is whole
    progress(f"root built in {(time.monotonic() - started) / 60:.1f} min")
    return root


@contextlib.contextmanager
def mounted_root(root: Path, pip_cache: Path, cpuinfo: Path | None) -> Iterator[None]:
    """Mount /proc, /sys, /dev and the pip cache into ``root``; always unmount them again.

    LiteRT reads /proc/cpuinfo and /sys for the CPU topology; pip and Python need /dev/null and
    /dev/urandom. ``cpuinfo`` (a file) is mounted over the root's /proc/cpuinfo (see :class:`PiCpu`).
    """
    guest_cache = root / GUEST_PIP_CACHE.lstrip("/")
    pip_cache.mkdir(parents=True, exist_ok=True)
    guest_cache.mkdir(parents=True, exist_ok=True)
    plan = [
        ["mount", "-t", "proc", "proc", root / "proc"],
        ["mount", "-t", "sysfs", "sysfs", root / "sys"],
        ["mount", "--bind", "/dev", root / "dev"],
        ["mount", "--bind", pip_cache, guest_cache],
    ]
    if cpuinfo is not None:
        plan.append(["mount", "--bind", "-o", "ro", cpuinfo, root / "proc" / "cpuinfo"])
    try:
        unmount_all(root)  # left over from a run that was killed (SIGKILL) before it could clean up
        for cmd in plan:
            run(cmd, what=f"mount {cmd[-1]}", timeout=60)
        yield
    finally:
        unmount_all(root)


# --------------------------------------------------------------------------------------------------
# The two sides: x86 reference (host) and arm64 (guest)
# --------------------------------------------------------------------------------------------------


def _passthrough_env() -> dict[str, str]:
    """Proxy and index settings a pip inside the root needs to reach the same registry as the host."""
    keep = {}
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if os.environ.get(name):
            keep[name] = os.environ[name]
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):  # a file:// mirror on the host is not in the root
        keep["PIP_INDEX_URL"] = index
    return keep


def index_url() -> str:
    return _passthrough_env().get("PIP_INDEX_URL", DEFAULT_INDEX)


@dataclass
class Guest:
    """Runs commands in the arm64 root with a clean environment."""

    root: Path
    ca_bundle: Path | None
    logs: Path
    cpu: PiCpu | None  # None: the host is arm64, no emulation

    @property
    def work(self) -> Path:
        """The run's work folder, as seen from the host."""
        return self.root / GUEST_WORK.lstrip("/")

    def env(self) -> dict[str, str]:
        env = {
            "PATH": f"{GUEST_WORK}/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "COLUMNS": "120",
            "PIP_CACHE_DIR": GUEST_PIP_CACHE, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
            "PIP_DEFAULT_TIMEOUT": "60", "PIP_PROGRESS_BAR": "off",
            **_passthrough_env(),
        }
        if self.ca_bundle is not None:
            for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
                env[name] = GUEST_CA_BUNDLE
        if self.cpu is not None:
            env["QEMU_CPU"] = self.cpu.qemu_cpu  # read by the binfmt-started qemu
        return env

    def prepare(self, binfmt: Binfmt) -> None:
        """Network settings and, without qemu's fix-binary flag, the interpreter inside the root."""
        resolv = self.root / "etc" / "resolv.conf"
        resolv.unlink(missing_ok=True)  # may be a dangling symlink into /run
        shutil.copyfile("/etc/resolv.conf", resolv)
        if self.ca_bundle is not None:
            shutil.copyfile(self.ca_bundle, self.root / GUEST_CA_BUNDLE.lstrip("/"))
        if binfmt.interpreter and not binfmt.fix_binary:
            target = self.root / binfmt.interpreter.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(binfmt.interpreter, target)

    def run(self, cmd: Sequence[str], *, what: str, timeout: float = COMMAND_TIMEOUT, echo: bool = False,
            log_name: str = "arm64.log") -> str:
        return run(["chroot", self.root, *cmd], what=what, env=self.env(), timeout=timeout, echo=echo,
                   log=self.logs / log_name)

    def path(self, host_path: Path) -> str:
        """A host path inside the root, as the guest sees it."""
        return "/" + os.fspath(host_path.relative_to(self.root))


def build_wheel(host_python: Path, dest: Path, log: Path) -> Path:
    """The project's wheel from the current tree (tracked and new files), built outside the clone.

    Building in place would leave build/ and *.egg-info in the clone, so the tree is copied first.
    """
    with tempfile.TemporaryDirectory(prefix="hairseg-arm64-src-") as tmp:
        src = Path(tmp) / "src"
        _copy_tree(REPO, src)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        run([host_python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", dest, src],
            what="pip wheel (building the project's wheel)", log=log, timeout=PIP_TIMEOUT)
    wheels = sorted(dest.glob("hairseg_edge-*.whl"))
    if len(wheels) != 1:
        raise Failure(f"pip wheel made {len(wheels)} hairseg_edge wheels in {dest}, expected 1")
    return wheels[0]


def _copy_tree(repo: Path, dest: Path) -> None:
    """Copy the working tree: git's tracked and untracked-but-not-ignored files, or all of it."""
    listing = subprocess.run(["git", "-C", os.fspath(repo), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=False)
    if listing.returncode != 0:  # not a git checkout (an unpacked sdist): copy everything but caches
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist",
                                                                  "*.egg-info", "__pycache__"))
        return
    for name in filter(None, listing.stdout.decode().split("\0")):
        source = repo / name
        if source.is_file():  # a deleted-but-tracked file is listed too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def forbidden_in(pip_list_json: str) -> list[str]:
    names = {d["name"].lower().replace("_", "-") for d in json.loads(pip_list_json)}
    return sorted(names & set(FORBIDDEN_DISTS))


def versions_of(pip_list_json: str, names: Sequence[str]) -> str:
    versions = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(pip_list_json)}
    return ", ".join(f"{n} {versions.get(n, 'missing')}" for n in names)


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What to check, from the command line (see :func:`parse_args`)."""

    cache: Path
    model: Path | None
    image: Path
    min_iou: float
    dataset_size: int
    cpu: str = "pi4"
    no_skip: bool = False


@dataclass
class Outcome:
    """What has passed so far; :meth:`line` is the summary printed last."""

    passed: list[str] = field(default_factory=list)
    agreement_iou: float | None = None
    arm64_eval_iou: float | None = None
    arm64_prepared: dict[str, str] | None = None  # prepared model input -> sha256

    def line(self) -> str:
        parts = [f"{step} ok" for step in self.passed]
        if self.arm64_prepared is not None:
            parts.append(f"{len(self.arm64_prepared)} model inputs bit-identical")
        if self.agreement_iou is not None:
            parts.append(f"agreement IoU {self.agreement_iou:.4f}")
        return "arm64: " + ", ".join(parts)


def check(opts: Options) -> Outcome:
    check_platform()
    ensure_host_tools()
    binfmt = ensure_binfmt()
    ca_bundle = host_ca_bundle()
    check_reachable(f"{index_url().rstrip('/')}/pip/", "the Python package index", ca_bundle)
    runner = "native arm64" if binfmt.interpreter is None else "qemu-aarch64 in binfmt_misc"
    progress(f"prerequisites ok: root, {runner}, debootstrap, {index_url()} reachable")
    if not opts.image.is_file():
        raise Failure(f"sample photo not found: {opts.image}")
    if opts.model is not None and not opts.model.is_file():
        raise Failure(f"model not found: {opts.model}")

    cpu = None if native_arm64() else PI_CPUS[opts.cpu]
    outcome = Outcome()
    with cache_lock(opts.cache):
        host_dir = opts.cache / "host"
        remove_tree(host_dir)
        host = HostSide(host_dir, host_dir / "logs")
        # First, on x86: a packaging error or a wheel without the bundled model should not wait for
        # a 10-minute debootstrap to be found.
        wheel = host.build()
        host.check_model(opts.model)

        recipe = RootRecipe(mirror=os.environ.get("HAIRSEG_ARM64_MIRROR", DEFAULT_MIRROR))
        root = ensure_root(opts.cache, recipe, ca_bundle)
        guest = Guest(root, ca_bundle, host.logs, cpu)
        remove_tree(guest.work)
        guest.work.mkdir(parents=True)
        cpuinfo = None
        if cpu is not None:
            cpuinfo = host_dir / f"cpuinfo-{cpu.name}"
            cpuinfo.write_text(cpu.cpuinfo(host_processors()))
        with mounted_root(root, opts.cache / "pip-cache", cpuinfo):
            guest.prepare(binfmt)
            about = guest.run(["sh", "-c", ". /etc/os-release; echo \"$PRETTY_NAME, $(uname -m), "
                               "$(python3 -c 'import sys; print(\"Python\", sys.version.split()[0])')\""],
                              what="running the arm64 root (emulation broken?)")
            emulated = f"emulated {cpu.model} ({cpu.qemu_cpu})" if cpu else "native"
            progress(f"arm64 root: {about.strip()}; {emulated}")
            inputs = host.inputs(opts, guest)
            guest_side(guest, wheel, inputs, opts, outcome)
        host.compare_prepared(inputs, outcome.arm64_prepared)
        reference = host.reference_mask(inputs)
        outcome.agreement_iou = host.agreement(reference, inputs.guest_mask_on_host, opts.min_iou)
        host.compare_eval(inputs, outcome.arm64_eval_iou, max_gap=1.0 - opts.min_iou)
    return outcome


@dataclass(frozen=True)
class Inputs:
    """Files the guest reads, as host paths (under the root) and as guest paths."""

    image_on_host: Path
    image: str
    dataset_on_host: Path
    dataset: str
    model: str | None  # guest path of --model; None = the bundled default
    model_on_host: Path | None
    guest_mask_on_host: Path


class HostSide:
    """The x86 reference: the same wheel in a venv on this machine, and the project's own metrics."""

    def __init__(self, folder: Path, logs: Path):
        self.folder = folder
        self.logs = logs
        self.venv = folder / "venv"
        self.python = self.venv / "bin" / "python"

    def _run(self, cmd: Sequence[str | os.PathLike[str]], *, what: str, echo: bool = False) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(COLUMNS="120", TERM="dumb")
        return run(cmd, what=what, env=env, log=self.logs / "x86.log", echo=echo, timeout=PIP_TIMEOUT,
                   cwd=self.folder)

    def build(self) -> Path:
        progress("x86: creating the reference venv and building the wheel from the current tree")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._run([sys.executable, "-m", "venv", self.venv], what="x86 venv")
        wheel = build_wheel(self.python, self.folder / "wheel", self.logs / "x86.log")
        progress(f"x86: built {wheel.name}; installing it")
        self._run([self.python, "-m", "pip", "install", "-q", wheel], what="x86 pip install of the wheel")
        listing = self._run([self.python, "-m", "pip", "list", "--format=json"], what="x86 pip list")
        progress(f"x86: {versions_of(listing, KEY_DISTS)}")
        return wheel

    def check_model(self, model: Path | None) -> None:
        """``hairseg-edge info`` on x86: the model loads (for the default: the wheel ships it)."""
        which = f"--model {model}" if model else "the bundled default model"
        progress(f"x86: hairseg-edge info on {which}")
        self._run(self._device(model).info(), what=f"x86 hairseg-edge info ({which})")

    def python_snippet(self, code: str, *args: str, what: str) -> str:
        return self._run([self.python, "-c", code, *args], what=what)

    def inputs(self, opts: Options, guest: Guest) -> Inputs:
        """Copy the photo and model into the root; generate the small eval data set there."""
        inputs_dir = guest.work / "inputs"
        inputs_dir.mkdir(parents=True)
        image = inputs_dir / opts.image.name
        shutil.copyfile(opts.image, image)
        model_host = None
        if opts.model is not None:
            model_host = inputs_dir / opts.model.name
            shutil.copyfile(opts.model, model_host)
        dataset = inputs_dir / "dataset"
        progress(f"x86: generating a {opts.dataset_size}-image synthetic data set for eval")
        self.python_snippet(MAKE_DATASET, os.fspath(dataset), str(opts.dataset_size),
                            what="synthetic data set")
        out = guest.work / "out"
        out.mkdir()
        return Inputs(image, guest.path(image), dataset, guest.path(dataset),
                      guest.path(model_host) if model_host else None,
                      model_host, out / "run" / mask_name(image))

    def _device(self, model: Path | None) -> DeviceCommands:
        """The device commands of the x86 venv, on ``model`` (None: the bundled default)."""
        cli = os.fspath(self.venv / "bin" / "hairseg-edge")
        return DeviceCommands(cli, os.fspath(model) if model else None)

    def reference_mask(self, inputs: Inputs) -> Path:
        progress("x86: hairseg-edge run on the sample photo (reference mask)")
        out = self.folder / "out"
        device = self._device(inputs.model_on_host)
        image = os.fspath(inputs.image_on_host)
        command = device.run(image, os.fspath(out / "run"), os.fspath(out / "run.json"))
        self._run(command, what="x86 hairseg-edge run")
        return out / "run" / mask_name(inputs.image_on_host)

    def compare_eval(self, inputs: Inputs, arm64_iou: float | None, max_gap: float) -> None:
        """The same eval on x86: the data set IoU may differ by ``max_gap`` at most (edge pixels)."""
        if arm64_iou is None:
            return
        out = self.folder / "out" / "eval.json"
        device = self._device(inputs.model_on_host)
        self._run(device.eval(os.fspath(inputs.dataset_on_host), os.fspath(out)),
                  what="x86 hairseg-edge eval")
        x86_iou = float(_read_json(out, "x86 eval")["iou"])
        progress(f"eval: data set IoU arm64 {arm64_iou:.4f}, x86 {x86_iou:.4f}")
        if abs(arm64_iou - x86_iou) > max_gap:
            raise Failure(f"arm64 and x86 eval disagree: IoU {arm64_iou:.4f} vs {x86_iou:.4f} "
                          f"(allowed gap {max_gap:.4f})")

    def compare_prepared(self, inputs: Inputs, arm64: dict[str, str] | None) -> None:
        """The contract promises the same model input bytes on every CPU: check it on x86 vs arm64."""
        if arm64 is None:
            return
        x86 = json.loads(self.python_snippet(PREPARED_DIGESTS, os.fspath(inputs.image_on_host),
                                             what="x86 prepared-input digests"))
        differ = sorted(name for name in x86.keys() | arm64.keys() if x86.get(name) != arm64.get(name))
        if differ:
            raise Failure(f"arm64 and x86 prepare different model inputs ({len(differ)} of {len(x86)}): "
                          f"{', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''}")
        progress(f"prepared inputs: all {len(x86)} identical on arm64 and x86 (sha256)")

    def agreement(self, reference: Path, arm64_mask: Path, min_iou: float) -> float:
        for mask in (reference, arm64_mask):
            if not mask.is_file():
                raise Failure(f"run wrote no mask at {mask}")
        report = json.loads(self.python_snippet(AGREEMENT, os.fspath(reference), os.fspath(arm64_mask),
                                                what="agreement IoU"))
        progress(f"agreement: IoU {report['iou']:.4f} (hair pixels x86 {report['x86_hair']}, "
                 f"arm64 {report['arm64_hair']}, of {report['pixels']}; differing {report['differ']})")
        if report["iou"] < min_iou:
            raise Failure(f"arm64 and x86 masks disagree: IoU {report['iou']:.4f} < {min_iou}")
        return float(report["iou"])


#: Runs in the x86 venv: the project's reader and metric, so "hair" means what it means everywhere.
AGREEMENT = """
import json, sys
from hairseg_edge.imageio import read_mask
from hairseg_edge.metrics import iou
a, b = read_mask(sys.argv[1]), read_mask(sys.argv[2])
if a.shape != b.shape:
    sys.exit(f"mask sizes differ: x86 {a.shape}, arm64 {b.shape}")
print(json.dumps({"iou": iou(b, a), "x86_hair": int(a.sum()), "arm64_hair": int(b.sum()),
                  "pixels": int(a.size), "differ": int((a != b).sum())}))
"""

#: Runs in the x86 venv: the project's synthetic data set (faces with hair, folder layout).
#: Runs in both venvs: digests of the model inputs the contract prepares from the sample photo, at
#: the sizes a device meets (shrink by one bilinear step, by halvings first, growth, letterbox). The
#: variants are made with numpy only (tiling, cropping), so both sides start from the same bytes.
PREPARED_DIGESTS = """
import hashlib, json, sys
import numpy as np
from hairseg_edge.contract import letterbox_image
from hairseg_edge.imageio import read_image
rgb = read_image(sys.argv[1])
h, w = rgb.shape[:2]
variants = {
    "photo": rgb,
    "tiled-3x2": np.ascontiguousarray(np.tile(rgb, (2, 3, 1))),
    "tall-crop": np.ascontiguousarray(rgb[:, : max(1, w // 3)]),
    "small": np.ascontiguousarray(rgb[: max(1, h // 4), : max(1, w // 4)]),
}
digests = {}
for name, image in variants.items():
    for size in (160, 224, 256):
        prepared, _ = letterbox_image(image, size)
        digests[f"{name} {image.shape[1]}x{image.shape[0]} -> {size}"] = hashlib.sha256(
            prepared.tobytes()).hexdigest()
print(json.dumps(digests, sort_keys=True))
"""


MAKE_DATASET = """
import sys
from hairseg_edge.synth import make_dataset
make_dataset(sys.argv[1], n=int(sys.argv[2]), seed=0)
"""


def mask_name(image: Path) -> str:
    """Where ``hairseg-edge run`` writes an image's mask inside its --out folder."""
    return f"{image.stem}_mask.png"


@dataclass(frozen=True)
class DeviceCommands:
    """The four device commands as a Pi user types them; ``model`` None means the bundled default."""

    cli: str
    model: str | None

    def info(self) -> list[str]:
        return [self.cli, "info", *self._positional_model()]

    def bench(self, runs: int, json_path: str) -> list[str]:
        return [self.cli, "bench", *self._positional_model(), "--runs", str(runs), "--json", json_path]

    def run(self, image: str, out: str, json_path: str) -> list[str]:
        return [self.cli, "run", image, *self._model_option(), "--out", out, "--json", json_path]

    def eval(self, data: str, json_path: str) -> list[str]:
        return [self.cli, "eval", *self._positional_model(), "--data", data, "--json", json_path]

    def _positional_model(self) -> list[str]:
        return [self.model] if self.model else []

    def _model_option(self) -> list[str]:
        return ["--model", self.model] if self.model else []


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Failure(f"{what} wrote no readable JSON at {path} ({exc})") from None


def guest_side(guest: Guest, wheel: Path, inputs: Inputs, opts: Options, outcome: Outcome) -> None:
    """Install the core wheel in a fresh arm64 venv and run the four device commands."""
    wheel_dir = guest.work / "wheel"
    wheel_dir.mkdir()
    shutil.copyfile(wheel, wheel_dir / wheel.name)
    progress("arm64: creating a venv with the root's python3 (emulated from here on: slow)")
    guest.run(["python3", "-m", "venv", f"{GUEST_WORK}/venv"], what="arm64 venv")
    progress("arm64: pip install of the core wheel with its dependencies (aarch64 wheels only)")
    started = time.monotonic()
    # --no-compile: byte-compiling every installed file is the slowest part under emulation, and
    # proves nothing (pip does not fail on it); the modules the commands import compile on import.
    guest.run(["pip", "install", "--only-binary=:all:", "--no-compile", f"{GUEST_WORK}/wheel/{wheel.name}"],
              what="arm64 pip install", timeout=PIP_TIMEOUT, log_name="arm64-pip.log")
    listing = guest.run(["pip", "list", "--format=json"], what="arm64 pip list")
    bad = forbidden_in(listing)
    if bad:
        raise Failure(f"the core install pulled in {', '.join(bad)}; a device install must not")
    progress(f"arm64: installed in {time.monotonic() - started:.0f} s, no TensorFlow; "
             f"{versions_of(listing, KEY_DISTS)}")
    outcome.passed.append("install")

    progress("arm64: the contract's model inputs for the sample photo and variants of it")
    outcome.arm64_prepared = json.loads(guest.run(["python", "-c", PREPARED_DIGESTS, inputs.image],
                                                  what="arm64 prepared-input digests"))

    device = DeviceCommands("hairseg-edge", inputs.model)
    out_host = guest.work / "out"
    out = guest.path(out_host)

    progress("arm64: hairseg-edge info")
    guest.run(device.info(), what="arm64 hairseg-edge info", echo=True)

    progress(f"arm64: hairseg-edge bench --runs {BENCH_RUNS}")
    guest.run(device.bench(BENCH_RUNS, f"{out}/bench.json"), what="arm64 hairseg-edge bench", echo=True)
    rows = _read_json(out_host / "bench.json", "bench")
    timed = [row.get("runs") for row in rows] if isinstance(rows, list) else []
    if not timed or any(n != BENCH_RUNS for n in timed):
        raise Failure(f"bench JSON should have rows of {BENCH_RUNS} timed runs, got {timed or rows!r}")
    outcome.passed.append("bench")

    progress(f"arm64: hairseg-edge run on {inputs.image_on_host.name}")
    guest.run(device.run(inputs.image, f"{out}/run", f"{out}/run.json"), what="arm64 hairseg-edge run",
              echo=True)
    _read_json(out_host / "run.json", "run")
    if not inputs.guest_mask_on_host.is_file():
        raise Failure(f"arm64 run wrote no mask at {inputs.guest_mask_on_host}")
    outcome.passed.append("run")

    progress(f"arm64: hairseg-edge eval on the {opts.dataset_size}-image synthetic data set")
    guest.run(device.eval(inputs.dataset, f"{out}/eval.json"), what="arm64 hairseg-edge eval", echo=True)
    scores = _read_json(out_host / "eval.json", "eval")
    if scores.get("n") != opts.dataset_size:
        raise Failure(f"eval scored {scores.get('n')} images, expected {opts.dataset_size}")
    outcome.arm64_eval_iou = float(scores["iou"])
    outcome.passed.append("eval")


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="check_arm64.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    default_cache = os.environ.get("HAIRSEG_ARM64_CACHE") or os.path.expanduser("~/.cache/hairseg-edge/arm64")
    parser.add_argument("--cache", type=Path, default=Path(default_cache),
                        help="cache folder for the arm64 root, pip cache and outputs "
                             "(env HAIRSEG_ARM64_CACHE; default ~/.cache/hairseg-edge/arm64)")
    default_model = os.environ.get("HAIRSEG_ARM64_MODEL")
    parser.add_argument("--model", type=Path, default=Path(default_model) if default_model else None,
                        help="a .tflite model to check instead of the bundled default "
                             "(env HAIRSEG_ARM64_MODEL)")
    parser.add_argument("--image", type=Path, default=SAMPLE_PHOTO,
                        help="the photo whose arm64 and x86 masks are compared "
                             f"(default {SAMPLE_PHOTO.relative_to(REPO)})")
    parser.add_argument("--min-iou", type=float, default=0.99, help="agreement IoU gate (default 0.99)")
    parser.add_argument("--dataset-size", type=int, default=6,
                        help="images in the synthetic eval set (default 6)")
    parser.add_argument("--cpu", choices=sorted(PI_CPUS), default="pi4",
                        help="the Raspberry Pi CPU to emulate: pi4 (Cortex-A72, default) or pi5 (Cortex-A76)")
    parser.add_argument("--no-skip", action="store_true",
                        help="a missing prerequisite (root, binfmt_misc, network) fails instead of skipping")
    args = parser.parse_args(argv)
    if not 0.0 < args.min_iou <= 1.0:
        parser.error("--min-iou must be in (0, 1]")
    if args.dataset_size < 1:
        parser.error("--dataset-size must be at least 1")
    cache = args.cache.expanduser().resolve()
    if cache == REPO or REPO in cache.parents:
        parser.error(f"the cache folder must be outside the clone ({REPO}), got {cache}")
    return Options(cache=cache, model=args.model.resolve() if args.model else None,
                   image=args.image.resolve(), min_iou=args.min_iou, dataset_size=args.dataset_size,
                   cpu=args.cpu, no_skip=args.no_skip)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    # A cancelled CI job sends SIGTERM: unwind like Ctrl-C, so children are killed and mounts released.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        outcome = check(opts)
    except Skip as exc:
        if opts.no_skip:
            print(f"arm64 check FAILED: {exc} (--no-skip)", flush=True)
            return 1
        capable, why = could_emulate()
        if capable and os.environ.get("CI", "").lower() not in ("", "0", "false"):
            # In CI a machine that can emulate must run the check: a skip there would hide a broken
            # Raspberry Pi path behind a green run.
            print(f"arm64 check FAILED: skipped ({exc}) although this machine could emulate ({why}); "
                  "CI does not accept a skip here", flush=True)
            return 1
        print(f"arm64 check skipped: {exc}", flush=True)
        return 0
    except Failure as exc:
        print(f"arm64 check FAILED: {exc}", flush=True)
        return 1
    except KeyboardInterrupt as exc:
        print(f"arm64 check interrupted ({exc or 'SIGINT'}); its processes and mounts were cleaned up",
              flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(outcome.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
