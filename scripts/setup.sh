#!/usr/bin/env bash
# Shared set-up for demo.sh and test.sh: Debian packages (apt-get only when one is missing),
# the model (scripts/fetch-model.sh), configure + build into build/release. Idempotent and quick
# when everything is there. Source it, then call the functions.
set -euo pipefail

ANVIL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ANVIL_BUILD_DIR="${ANVIL_BUILD_DIR:-$ANVIL_ROOT/build/release}"

ANVIL_APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-venv
  python3-pip unzip libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libicu-dev libopenblas-dev libyaml-cpp-dev libgrpc++-dev
  protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libgloo-dev libsqlite3-dev
  libcpp-httplib-dev
)

anvil_ensure_packages() {
  local missing=()
  for p in "${ANVIL_APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

anvil_ensure_model() {
  "$ANVIL_ROOT/scripts/fetch-model.sh"
}

# The F32, Q8_0 and F16 copies of the model, made with llama.cpp's own quantize API (the
# oracle's venv): the oracle tests and benchmarks use them.
anvil_ensure_f32_model() {
  local models="${ANVIL_MODELS:-$HOME/.cache/anvil/models}" name
  for name in F32 Q8_0 F16; do
    if [[ ! -f "$models/SmolLM2-135M-Instruct.$name.gguf" ]]; then
      echo "setup: making the F32/Q8_0/F16 copies of the model with llama.cpp (one time)"
      "$ANVIL_ROOT/scripts/reference/llamacpp_golden.sh" --make-copies
      return
    fi
  done
}

# Python's gRPC toolchain (grpcio-tools, pinned) in build/grpc-venv: the cluster test that
# generates a client from proto/ in another language and drives a job with it.
anvil_ensure_grpc_venv() {
  local venv="$ANVIL_ROOT/build/grpc-venv"
  if ! "$venv/bin/python" -c "import grpc_tools, grpc" 2>/dev/null; then
    echo "setup: creating $venv (grpcio-tools)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q grpcio==1.62.2 grpcio-tools==1.62.2 protobuf==4.25.3
  fi
}

# The official openai Python client (pinned; httpx pinned to a release it works with) in
# build/openai-venv: the server test that drives anvil-server's HTTP API with it.
anvil_ensure_openai_venv() {
  local venv="$ANVIL_ROOT/build/openai-venv"
  if ! "$venv/bin/python" -c "import openai, httpx" 2>/dev/null; then
    echo "setup: creating $venv (openai client)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q openai==1.54.4 httpx==0.27.2
  fi
}

anvil_build() {
  local jobs
  jobs="$(nproc 2>/dev/null || echo 2)"
  if [[ ! -f "$ANVIL_BUILD_DIR/build.ninja" ]]; then
    cmake -S "$ANVIL_ROOT" -B "$ANVIL_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  fi
  cmake --build "$ANVIL_BUILD_DIR" -j "$jobs"
}
