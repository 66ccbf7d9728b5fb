#!/usr/bin/env bash
# Sets everything up (packages, model, build) and runs the main job: the model card, three chat
# prompts answered with streamed tokens and the prefill/decode speed; then the lifecycle through
# the cluster: a local coordinator with two workers (`anvil up`), a LoRA fine-tuning job on the
# people/places extraction task submitted and watched over gRPC, the job list, and the exact match
# of the fine-tuned model against the untouched one on held-out records; then the same comparison
# as a sharded eval job (its result registered with the model), the fine-tune quantized to Q8_0 by
# a quantize job, deployed behind anvil-server on a worker and queried over the OpenAI-compatible
# HTTP API.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

anvil_ensure_packages
anvil_ensure_model
anvil_build

A="$ANVIL_BUILD_DIR/cli/anvil"
MODEL="${ANVIL_MODELS:-$HOME/.cache/anvil/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS="${ANVIL_THREADS:-2}"
"$A" demo "$MODEL" --threads "$THREADS"

echo
echo "== the lifecycle through the cluster =="
[[ -f "$ANVIL_ROOT/data/ner/train.jsonl" ]] ||
  python3 "$ANVIL_ROOT/scripts/data/make_ner.py" --out "$ANVIL_ROOT/data/ner" --seed 42
# A private cluster for the demo: its own state, token and a free port.
export ANVIL_HOME="$ANVIL_ROOT/build/demo-cluster"
rm -rf "$ANVIL_HOME" "$ANVIL_ROOT/runs/demo-cluster"
"$A" up --workers 2 --threads 1 --listen 127.0.0.1:0 --home "$ANVIL_HOME" &
UP=$!
trap 'kill "$UP" 2>/dev/null; wait "$UP" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s "$ANVIL_HOME/address" ]] && break; sleep 0.2; done
sleep 1  # the workers register
"$A" submit "$ANVIL_ROOT/recipes/demo-cluster.yaml" --workers 2 --name ner-lora-demo --watch
"$A" jobs
echo
echo "== exact match on 20 held-out records: untouched model, then the fine-tuned one =="
"$A" eval-chat "$MODEL" --data "$ANVIL_ROOT/data/ner/test.jsonl" --limit 20 --show 1 --threads "$THREADS"
"$A" eval-chat "$ANVIL_ROOT/runs/demo-cluster/merged-f16.gguf" --data "$ANVIL_ROOT/data/ner/test.jsonl" \
  --limit 20 --show 1 --threads "$THREADS"

echo
echo "== the fine-tuned model as a 2-worker eval job; the score is registered with the model =="
RUN="$ANVIL_ROOT/runs/demo-cluster"
"$A" eval-job "$RUN/merged-f16.gguf" "$ANVIL_ROOT/tasks/ner.yaml" --limit 20 --workers 2 \
  --out "$RUN/eval-ner.json" --watch
"$A" models --kind eval
echo
echo "== quantize it (Q8_0, llama.cpp's formulas) as a job, deploy it, ask it over HTTP =="
"$A" quantize-job "$RUN/merged-f16.gguf" "$RUN/merged-q8_0.gguf" --type q8_0 --watch
DEPLOY_OUT="$("$A" deploy "$RUN/merged-q8_0.gguf" --threads "$THREADS")"
echo "$DEPLOY_OUT"
HTTP_PORT="$(sed -n 's/.*listening on grpc=[^ ]* http=[^:]*:\([0-9]*\).*/\1/p' <<<"$DEPLOY_OUT")"
DEPLOY_JOB="$(sed -n 's/^deployed as \(job-[0-9]*\).*/\1/p' <<<"$DEPLOY_OUT")"
python3 - "$HTTP_PORT" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
body = {"model": "merged-q8_0", "max_tokens": 64, "temperature": 0,
        "messages": [{"role": "user", "content":
                      "Extract the people and places from the sentence. Answer with JSON.\n\n"
                      "Ada Lovelace flew from Paris to Lima."}]}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                             data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
resp = json.load(urllib.request.urlopen(req, timeout=120))
print("POST /v1/chat/completions ->", resp["choices"][0]["message"]["content"])
print("usage:", resp["usage"])
PY
"$A" cancel "$DEPLOY_JOB"
