#!/usr/bin/env bash
# Reusable Python virtualenv setup for the reference (oracle) scripts.
#
# Source it and call:   ensure_venv VENV_DIR REQ...    (REQ: "name==version" or "name")
#   creates VENV_DIR with `python3 -m venv` if missing, pip-installs each REQ that is not already
#   installed (at that version when pinned), quietly; sets ANVIL_VENV_PY to the venv's python.
# Or run it:            scripts/reference/ensure_venv.sh [VENV_DIR [REQ...]]
#   defaults: VENV_DIR = <repo>/build/ref-venv, REQ = the llama.cpp oracle's pins (below);
#   prints the venv's python path on stdout.

ANVIL_REF_REQS=("llama-cpp-python==0.3.36" "numpy")

_anvil_req_ok() {  # python req -> 0 if installed (at the pinned version)
    "$1" - "$2" <<'PY' >/dev/null 2>&1
import sys, importlib.metadata as md
req = sys.argv[1]
name, _, ver = req.partition("==")
try:
    have = md.version(name)
except md.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if (not ver or have.split("+")[0] == ver) else 1)  # 2.5.1+cu124 satisfies ==2.5.1
PY
}

ensure_venv() {
    local venv="$1"; shift
    if [[ -z "$venv" ]]; then echo "ensure_venv: no venv dir" >&2; return 2; fi
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "ensure_venv: creating $venv" >&2
        python3 -m venv "$venv" || { echo "ensure_venv: python3 -m venv failed (apt-get install python3-venv?)" >&2; return 1; }
    fi
    local py="$venv/bin/python" missing=() r
    for r in "$@"; do
        _anvil_req_ok "$py" "$r" || missing+=("$r")
    done
    if ((${#missing[@]})); then
        echo "ensure_venv: installing ${missing[*]} into $venv (llama-cpp-python builds from source: minutes)" >&2
        # llama-cpp-python compiles llama.cpp; keep it to the cores we have.
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
            "$py" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2 || {
            echo "ensure_venv: pip install failed" >&2; return 1; }
    fi
    ANVIL_VENV_PY="$py"
    export ANVIL_VENV_PY
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    venv="${1:-$repo/build/ref-venv}"
    (($# > 0)) && shift
    if (($# > 0)); then ensure_venv "$venv" "$@"; else ensure_venv "$venv" "${ANVIL_REF_REQS[@]}"; fi
    echo "$ANVIL_VENV_PY"
fi
