#!/usr/bin/env sh
# Print the first Python 3.10-3.13 found (TensorFlow 2.21 has no wheels for 3.14), or say so and fail.
# Honour $PYTHON when it is set and suitable.
for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3 python; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
        command -v "$cand"
        exit 0
    fi
done
echo "hairseg-edge: no Python 3.10-3.13 found (install one, or set PYTHON=/path/to/python3.x)" >&2
exit 2
