#!/usr/bin/env bash
# Prepares bench/.venv with gmpy2 for the Python+gmpy2 reference of
# `make bench`. Optional: if python3, venv or gmpy2 cannot be had, says so
# and succeeds; the bench then skips that reference with a note.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=bench/.venv
if ! command -v python3 >/dev/null 2>&1; then
    echo "bench-venv: python3 not found; the Python references will be skipped" >&2
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >/dev/null 2>&1 || {
        echo "bench-venv: cannot create $venv (python3 -m venv failed); the Python+gmpy2 reference will be skipped" >&2
        exit 0
    }
fi
if ! "$venv/bin/python" -c "import gmpy2" >/dev/null 2>&1; then
    echo "bench-venv: installing gmpy2 into $venv" >&2
    "$venv/bin/pip" install -q gmpy2 >/dev/null 2>&1 || \
        echo "bench-venv: gmpy2 could not be installed; the Python+gmpy2 reference will be skipped" >&2
fi
exit 0
