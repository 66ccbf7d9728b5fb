#!/usr/bin/env bash
# Regenerate the llama.cpp golden fixtures (tests/fixtures/) with the pinned llama-cpp-python.
# Usage: scripts/reference/llamacpp_golden.sh [--only tokenizer,logits,copies,perplexity,top1,tiny]
#                                             [--tiny-tool PATH] [--make-f32-only] [--make-copies] [--verbose]
# Models: $ANVIL_MODELS or ~/.cache/anvil/models (scripts/fetch-model.sh fetches the Q4_1 file).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=ensure_venv.sh
source "$here/ensure_venv.sh"
ensure_venv "${ANVIL_REF_VENV:-$repo/build/ref-venv}" "${ANVIL_REF_REQS[@]}"
exec "$ANVIL_VENV_PY" "$here/llamacpp_golden.py" "$@"
