#!/usr/bin/env bash
# Sets everything up (packages, model, build) and runs the main job: the model card, three chat
# prompts answered with streamed tokens and the prefill/decode speed; then the lifecycle through
# the cluster: a local coordinator with two workers (`anvil up`), a LoRA fine-tuning job on the
# people/places extraction task submitted and watched over gRPC, the job list, and the exact match
# of the fine-tuned model against the untouched one on held-out records.
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
