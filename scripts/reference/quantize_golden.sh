#!/usr/bin/env bash
# Regenerate tests/fixtures/quantize/*.json: llama.cpp's quantizer (pinned llama-cpp-python,
# llama_model_quantize with its default params) on the F32 SmolLM2 copy -> per-tensor types and
# bytes (sha256 + first 64 bytes), changed metadata, a load check; see quantize_golden.py.
# Usage: scripts/reference/quantize_golden.sh [--only q8_0,q4_0_pure,...] [--no-nan] [--verbose]
# Models: $ANVIL_MODELS or ~/.cache/anvil/models (the F32 copy: llamacpp_golden.sh --make-f32-only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=ensure_venv.sh
source "$here/ensure_venv.sh"
ensure_venv "${ANVIL_REF_VENV:-$repo/build/ref-venv}" "${ANVIL_REF_REQS[@]}"
exec "$ANVIL_VENV_PY" "$here/quantize_golden.py" "$@"
