#!/usr/bin/env bash
# Sets everything up (packages, model, build) and runs the main job: the model card, three chat
# prompts answered with streamed tokens, and the prefill/decode speed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

anvil_ensure_packages
anvil_ensure_model
anvil_build

MODEL="${ANVIL_MODELS:-$HOME/.cache/anvil/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
exec "$ANVIL_BUILD_DIR/cli/anvil" demo "$MODEL" --threads "${ANVIL_THREADS:-2}"
