#!/usr/bin/env bash
# Create (or reuse) the virtual environment with hairseg-edge[mobile,test]: MediaPipe Tasks next to the
# light device install, used to prove that our packaged .tflite files load in MediaPipe's ImageSegmenter.
#
# Why a separate environment: mediapipe pins absl-py>=2 while tensorflow-model-optimization (the [train]
# extra) pins absl-py<2, so the two can never share one venv.
#
# Usage:  scripts/mobile_venv.sh            # prints the venv's python on the last line of stdout
# Env:    HAIRSEG_MOBILE_VENV    where to put it (default: <repo>/.venv-mobile, git-ignored)
#         HAIRSEG_MOBILE_PYTHON  interpreter to build it from (default: first of python3.12, 3.11, 3.10,
#                                3.13, python3 that is 3.10-3.13)
#
# Idempotent: a stamp file records the inputs (pyproject.toml, this script, the interpreter version);
# when it matches and mediapipe + hairseg_edge import, the venv is reused without touching the network.
# The repo is installed editable, so code changes need no reinstall; dependency changes do (stamp).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HAIRSEG_MOBILE_VENV:-$repo/.venv-mobile}"
stamp="$venv/.hairseg-mobile-stamp"

log() { echo "mobile_venv: $*" >&2; }

pick_python() {
    local candidates=()
    if [[ -n "${HAIRSEG_MOBILE_PYTHON:-}" ]]; then
        candidates=("$HAIRSEG_MOBILE_PYTHON")
    else
        candidates=(python3.12 python3.11 python3.10 python3.13 python3)
    fi
    local py
    for py in "${candidates[@]}"; do
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys, venv; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' \
            2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    log "no Python 3.10-3.13 with the venv module found (tried: ${candidates[*]});"
    log "install one (e.g. apt-get install python3-venv) or set HAIRSEG_MOBILE_PYTHON"
    return 1
}

python_bin="$(pick_python)"
python_version="$("$python_bin" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
wanted_stamp="$(
    {
        echo "python=$python_version"
        sha256sum "$repo/pyproject.toml" "${BASH_SOURCE[0]}" | cut -d' ' -f1
    } | sha256sum | cut -d' ' -f1
)"

mkdir -p "$(dirname "$venv")"
# Two test processes may ask for the venv at once: serialise on a lock (in TMPDIR, since --clear
# would delete one kept inside the venv).
lock="${TMPDIR:-/tmp}/hairseg-mobile-venv-$(echo "$venv" | sha256sum | cut -c1-16).lock"
exec 9>"$lock"
flock 9

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted_stamp" ]] \
    && "$venv/bin/python" -c 'import mediapipe, hairseg_edge, ai_edge_litert' >/dev/null 2>&1; then
    log "reusing $venv (up to date)"
    echo "$venv/bin/python"
    exit 0
fi

if [[ -x "$venv/bin/python" ]] \
    && [[ "$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" \
        == "$python_version" ]]; then
    log "updating $venv (inputs changed or install incomplete)"
else
    log "creating $venv with $python_bin ($python_version)"
    "$python_bin" -m venv --clear "$venv"
fi
rm -f "$stamp"

# --upgrade-strategy only-if-needed keeps what is already there; the pip cache is used as usual.
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet -e "$repo[mobile,test]" >&2

# mediapipe depends on opencv-contrib-python, the core on opencv-python-headless: both ship the `cv2`
# package, and whichever pip wrote last owns the files. Check that cv2 still imports and works.
"$venv/bin/python" - <<'PY' >&2
import cv2, numpy as np
import mediapipe
from mediapipe.tasks.python import vision  # noqa: F401
import hairseg_edge, ai_edge_litert  # noqa: F401
cv2.resize(np.zeros((4, 4, 3), np.uint8), (2, 2), interpolation=cv2.INTER_AREA)
print(f"mobile_venv: mediapipe {mediapipe.__version__}, OpenCV {cv2.__version__}")
PY

echo "$wanted_stamp" >"$stamp"
log "ready: $venv"
echo "$venv/bin/python"
