#!/usr/bin/env bash
# Regenerate the PyTorch training fixtures (tests/fixtures/train/torch_*.safetensors and
# torch_golden.json) with the pinned torch, on the tiny llama written by anvil_make_tiny_model.
# Usage: scripts/reference/torch_golden.sh [--tiny-tool PATH] [--out-dir DIR] [--no-selftest]
#                                          [--no-hf-check]
# Environment:
#   ANVIL_TORCH_VENV   the venv (default <repo>/build/torch-venv; created/completed here)
#   ANVIL_BUILD_DIR    a configured build dir to build the tool in (default <repo>/build/release);
#                      when it has no build.ninja, ANVIL_ORACLE_BUILD_DIR (default
#                      <repo>/build/oracle) is configured CPU-only and the tool alone is built there
#   ANVIL_JOBS         build parallelism (default: nproc)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=ensure_venv.sh
source "$here/ensure_venv.sh"

ANVIL_TORCH_REQS=("torch==2.5.1" "numpy" "safetensors" "gguf")
ensure_venv "${ANVIL_TORCH_VENV:-$repo/build/torch-venv}" "${ANVIL_TORCH_REQS[@]}"

args=("$@")
have_tool=0
for a in "$@"; do [[ "$a" == "--tiny-tool" ]] && have_tool=1; done
if ((!have_tool)); then
    jobs="${ANVIL_JOBS:-$(nproc 2>/dev/null || echo 2)}"
    bdir="${ANVIL_BUILD_DIR:-$repo/build/release}"
    if [[ ! -f "$bdir/build.ninja" ]]; then
        bdir="${ANVIL_ORACLE_BUILD_DIR:-$repo/build/oracle}"
        if [[ ! -f "$bdir/build.ninja" ]]; then
            echo "torch_golden: configuring $bdir (CPU only)" >&2
            mkdir -p "$bdir"
            cmake -S "$repo" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DANVIL_CUDA=OFF \
                -DANVIL_BUILD_BENCH=OFF >"$bdir/torch_golden_configure.log" 2>&1 || {
                tail -n 30 "$bdir/torch_golden_configure.log" >&2
                echo "torch_golden: cmake configure failed" >&2; exit 1; }
        fi
    fi
    echo "torch_golden: building anvil_make_tiny_model in $bdir" >&2
    cmake --build "$bdir" --target anvil_make_tiny_model -j "$jobs" >"$bdir/torch_golden_build.log" 2>&1 || {
        tail -n 40 "$bdir/torch_golden_build.log" >&2
        echo "torch_golden: building anvil_make_tiny_model failed" >&2; exit 1; }
    args+=(--tiny-tool "$bdir/tests/tools/anvil_make_tiny_model")
fi
exec "$ANVIL_VENV_PY" "$here/torch_golden.py" "${args[@]}"
