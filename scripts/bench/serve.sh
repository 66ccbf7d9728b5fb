#!/usr/bin/env bash
# Serving benchmark: anvil-server vs llama-cpp-python's OpenAI-compatible server
# (python -m llama_cpp.server, via llamacpp_server.py) on the same GGUF and threads, in the same run: aggregate generated
# tokens/s, time to first token and inter-token latency p50/p99 at 1, 4 and 16 concurrent
# streams, rounds alternating the two servers (scripts/bench/serve_bench.py measures).
# Needs a quiet machine for numbers worth recording.
# usage: [ANVIL_SERVER_FLAGS="--kv-type f16"] scripts/bench/serve.sh [--quick] [MODEL.gguf] [THREADS] [ROUNDS]
#   --quick: 1 round, 16 tokens, one request per stream (checks the setup, not for the record)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; shift; fi
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
MODEL="${1:-$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-3}"
MAX_TOKENS=64
REQUESTS=2
if ((QUICK)); then ROUNDS=1; MAX_TOKENS=16; REQUESTS=1; fi
SERVER="${ANVIL_SERVER_BIN:-$ROOT/build/release/server/anvil-server}"
[[ -x "$SERVER" ]] || { echo "serve.sh: build first ($SERVER missing; set ANVIL_SERVER_BIN)" >&2; exit 1; }
[[ -f "$MODEL" ]] || { echo "serve.sh: $MODEL missing (scripts/fetch-model.sh)" >&2; exit 1; }

# llama-cpp-python with its server extras, pinned, in build/serve-venv.
source "$ROOT/scripts/reference/ensure_venv.sh"
ensure_venv "$ROOT/build/serve-venv" "llama-cpp-python==0.3.36" "uvicorn==0.32.1" \
  "fastapi==0.115.6" "sse-starlette==2.1.3" "starlette-context==0.3.6" \
  "pydantic-settings==2.7.0" "PyYAML==6.0.2"
PY="$ANVIL_VENV_PY"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ANVIL_PORT="$(free_port)"
LLAMA_PORT="$(free_port)"
LOGS="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$LOGS"
}
trap cleanup EXIT

# ANVIL_SERVER_FLAGS: extra anvil-server flags (e.g. "--kv-type f16").
# shellcheck disable=SC2086
"$SERVER" --model "$MODEL" --threads "$THREADS" --port -1 --http-port "$ANVIL_PORT" \
  --max-running 16 --max-queue 64 ${ANVIL_SERVER_FLAGS:-} >"$LOGS/anvil.out" 2>"$LOGS/anvil.err" &
pids+=($!)
# (llamacpp_server.py: python -m llama_cpp.server with the extra buffer types off; see there.
# --interrupt_requests False: by default a new request cuts the one being generated.)
"$PY" "$ROOT/scripts/bench/llamacpp_server.py" --model "$MODEL" --n_threads "$THREADS" --n_threads_batch "$THREADS" \
  --n_ctx 2048 --interrupt_requests False --host 127.0.0.1 --port "$LLAMA_PORT" >"$LOGS/llama.out" 2>"$LOGS/llama.err" &
pids+=($!)

wait_ready() {  # URL NAME LOG
  for _ in $(seq 1 600); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('$1/models', timeout=2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "serve.sh: $2 did not come up; its log:" >&2
  tail -20 "$3" >&2
  exit 1
}
wait_ready "http://127.0.0.1:$ANVIL_PORT/v1" anvil-server "$LOGS/anvil.err"
wait_ready "http://127.0.0.1:$LLAMA_PORT/v1" llama_cpp.server "$LOGS/llama.err"

echo "model $(basename "$MODEL"), $THREADS threads, $ROUNDS round(s) alternating, $MAX_TOKENS tokens per request, $REQUESTS request(s) per stream"
# Every request generates exactly MAX_TOKENS tokens: anvil ignores end-of-generation tokens;
# llama.cpp has them banned (SmolLM2: <|endoftext|> = 0, <|im_end|> = 2).
"$PY" "$ROOT/scripts/bench/serve_bench.py" \
  --server "anvil=http://127.0.0.1:$ANVIL_PORT/v1,{\"ignore_eos\": true, \"stream_options\": {\"include_usage\": true}}" \
  --server "llama.cpp=http://127.0.0.1:$LLAMA_PORT/v1,{\"logit_bias\": {\"0\": -100, \"2\": -100}}" \
  --concurrency 1,4,16 --rounds "$ROUNDS" --max-tokens "$MAX_TOKENS" --requests "$REQUESTS"
