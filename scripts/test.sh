#!/usr/bin/env bash
# Sets everything up (packages, model, the F32 oracle copy, build) and runs the whole suite
# through ctest. Ends with ctest's summary line; exits non-zero on any failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

anvil_ensure_packages
anvil_ensure_model
anvil_ensure_f32_model
anvil_ensure_grpc_venv
anvil_ensure_openai_venv
anvil_build

cd "$ANVIL_BUILD_DIR"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
