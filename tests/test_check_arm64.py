"""The arm64 emulation harness (scripts/check_arm64.py): its decisions, without emulating anything.

The end-to-end run (debootstrap, qemu, pip on arm64) is ``make check-arm64`` itself; these tests pin the
logic that decides whether a cached root is reused, what counts as a forbidden install, which mounts
are released, and that a missing prerequisite is one line and exit 0.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("check_arm64", REPO / "scripts" / "check_arm64.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_cached_root_is_reused_only_with_a_matching_completion_marker(harness, tmp_path):
    recipe = harness.RootRecipe()
    root = tmp_path / "root"
    marker = tmp_path / "root.complete"
    root.mkdir()
    assert not harness.root_is_complete(root, marker, recipe), "no marker: an interrupted build"
    marker.write_text("{not json")
    assert not harness.root_is_complete(root, marker, recipe)
    marker.write_text(json.dumps({**recipe.to_dict(), "suite": "trixie"}))
    assert not harness.root_is_complete(root, marker, recipe), "built from another recipe"
    marker.write_text(json.dumps({**recipe.to_dict(), "built": "2026-01-01T00:00:00"}))
    assert harness.root_is_complete(root, marker, recipe)
    root.rmdir()
    assert not harness.root_is_complete(root, marker, recipe), "marker without its root"


def test_forbidden_distributions_are_found_whatever_their_spelling(harness):
    listing = json.dumps([
        {"name": "numpy", "version": "2.4.6"},
        {"name": "tf_keras", "version": "2.21.0"},
        {"name": "TensorFlow", "version": "2.21.0"},
        {"name": "ai-edge-litert", "version": "2.3.0"},
    ])
    assert harness.forbidden_in(listing) == ["tensorflow", "tf-keras"]
    assert harness.forbidden_in(json.dumps([{"name": "ai-edge-litert", "version": "2.3.0"}])) == []
    assert harness.versions_of(listing, ("numpy", "typer")) == "numpy 2.4.6, typer missing"


def test_mounts_under_a_root_are_listed_deepest_first_with_escaped_paths(harness):
    mountinfo = "\n".join([
        r"36 35 0:5 / /cache/my\040root/proc rw - proc proc rw",
        r"37 36 8:1 /x /cache/my\040root/proc/cpuinfo ro - ext4 /dev/vda ro",
        r"38 35 8:1 / /cache/my\040rootfs rw - ext4 /dev/vda rw",
        r"39 35 0:6 / /proc rw - proc proc rw",
    ])
    assert harness.mounts_under(Path("/cache/my root"), mountinfo) == [
        Path("/cache/my root/proc/cpuinfo"), Path("/cache/my root/proc")]


def test_cpu_lists_and_pi_cpuinfo(harness):
    assert harness.parse_cpu_list("0-1\n") == [0, 1]
    assert harness.parse_cpu_list("0,2-3") == [0, 2, 3]
    text = harness.PI_CPUS["pi4"].cpuinfo([0, 1])
    assert text.count("processor\t:") == 2
    assert "CPU part\t: 0xd08" in text and "Raspberry Pi 4" in text
    assert "asimddp" in harness.PI_CPUS["pi5"].features and "asimddp" not in harness.PI_CPUS["pi4"].features


def test_a_missing_prerequisite_is_one_line_and_exit_0(harness, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(harness.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")  # not root: could not emulate, so even CI accepts the skip
    assert harness.main(["--cache", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["arm64 check skipped: needs root (chroot, mount, binfmt_misc); run it as root, "
                     "e.g. sudo make check-arm64"]
    assert harness.main(["--cache", str(tmp_path), "--no-skip"]) == 1
    assert capsys.readouterr().out.startswith("arm64 check FAILED: needs root")


def test_the_cache_must_live_outside_the_clone(harness, capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness.main(["--cache", str(REPO / "arm64-cache")])
    assert exit_info.value.code == 2
    assert "outside the clone" in capsys.readouterr().err


def _digests(harness, image: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", harness.PREPARED_DIGESTS, str(image)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_prepared_input_digests_cover_every_resampling_path_and_are_repeatable(harness):
    image = REPO / "examples" / "astronaut.png"
    digests = _digests(harness, image)
    # 4 variants x 3 sizes: one bilinear step, halvings first (the tiled photo), growth (the small
    # crop) and a letterbox (the tall crop).
    assert len(digests) == 12 and len(set(digests.values())) == 12
    assert digests == _digests(harness, image)


def test_a_differing_prepared_input_fails_the_check_naming_it(harness, tmp_path):
    image = REPO / "examples" / "astronaut.png"
    host = harness.HostSide(tmp_path, tmp_path / "logs")
    digests = _digests(harness, image)
    host.python_snippet = lambda code, *args, what: json.dumps(digests)  # the x86 venv's answer
    inputs = harness.Inputs(image, "/img", tmp_path, "/data", None, None, tmp_path / "m.png")
    host.compare_prepared(inputs, dict(digests))  # identical: passes
    changed = dict(digests)
    name = sorted(changed)[0]
    changed[name] = "0" * 64
    with pytest.raises(harness.Failure, match="prepare different model inputs \\(1 of 12\\): " + name):
        host.compare_prepared(inputs, changed)


def test_could_emulate_on_this_machine_matches_what_it_has(harness):
    """The decision itself, on the real machine: root on Linux with binfmt_misc in the kernel and qemu
    installed or apt-get to install it (this project's machines and CI: root, apt reachable)."""
    import os
    import shutil

    capable, why = harness.could_emulate()
    kernel = "binfmt_misc" in Path("/proc/filesystems").read_text() if sys.platform == "linux" else False
    expected = (sys.platform == "linux" and os.geteuid() == 0 and (harness.native_arm64() or (
        kernel and bool(shutil.which("qemu-aarch64-static") or shutil.which("apt-get")))))
    assert capable == expected, why
    if os.environ.get("CI") and os.geteuid() == 0 and shutil.which("apt-get") and kernel:
        assert capable  # CI here is root with apt: the arm64 check must run, not skip


def test_could_emulate_says_no_without_root_or_a_way_to_get_qemu(harness, monkeypatch):
    monkeypatch.setattr(harness.sys, "platform", "linux")
    monkeypatch.setattr(harness.os, "geteuid", lambda: 1000)
    assert harness.could_emulate() == (False, "not root")
    monkeypatch.setattr(harness.os, "geteuid", lambda: 0)
    monkeypatch.setattr(harness, "native_arm64", lambda: False)
    monkeypatch.setattr(harness.shutil, "which", lambda tool: None)
    capable, why = harness.could_emulate()
    assert not capable and ("qemu" in why or "binfmt_misc" in why)
    monkeypatch.setattr(harness.shutil, "which", lambda tool: "/usr/bin/apt-get" if tool == "apt-get" else None)
    monkeypatch.setattr(harness, "BINFMT_DIR", Path("/nonexistent"))
    monkeypatch.setattr(harness.Path, "read_text", lambda self, *a, **k: "nodev\tbinfmt_misc\n")
    assert harness.could_emulate() == (True, "root, binfmt_misc in the kernel, qemu-aarch64-static "
                                             "installable with apt-get")


def test_in_ci_a_skip_on_a_machine_that_could_emulate_fails(harness, monkeypatch, capsys, tmp_path):
    def skipping(opts):
        raise harness.Skip("needs the network to the Debian mirror (example)")

    monkeypatch.setattr(harness, "check", skipping)
    monkeypatch.setattr(harness, "could_emulate", lambda: (True, "root, binfmt_misc in the kernel"))
    monkeypatch.setenv("CI", "true")
    assert harness.main(["--cache", str(tmp_path)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("arm64 check FAILED: skipped (needs the network") and "could emulate" in last
    monkeypatch.delenv("CI")
    assert harness.main(["--cache", str(tmp_path)]) == 0  # a developer's machine: a skip, said last
    assert capsys.readouterr().out.splitlines()[-1] == \
        "arm64 check skipped: needs the network to the Debian mirror (example)"
    monkeypatch.setattr(harness, "could_emulate", lambda: (False, "not root"))
    monkeypatch.setenv("CI", "true")
    assert harness.main(["--cache", str(tmp_path)]) == 0


def test_ci_run_ends_with_the_arm64_skip_when_there_was_one():
    """.ci/run's last line names an arm64 skip instead of a plain "CI passed"."""
    script = (REPO / ".ci" / "run").read_text()
    tail = script[script.index("make check-arm64"):]
    assert "arm64 check skipped" in tail and "SKIPPED" in tail
