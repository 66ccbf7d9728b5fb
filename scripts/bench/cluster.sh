#!/usr/bin/env bash
# Data-parallel speed of the cluster on this machine: tokens/s of a LoRA job on SmolLM2 with 2
# workers (1 thread each) vs 1 worker (1 thread), same recipe and global batch, the job kinds
# alternating ROUNDS times; prints medians, the ratio, and the share of a step spent in the
# gradient allreduce (rank 0's view, waiting for the other rank included). A single process with
# 2 threads runs in the same rounds as the reference a user has without the cluster.
# usage: scripts/bench/cluster.sh [MODEL.gguf] [ROUNDS]   (env: STEPS, MICRO, ACCUM, SEQ, BUILD)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
MODEL="${1:-$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
ROUNDS="${2:-3}"
STEPS="${STEPS:-8}"
MICRO="${MICRO:-4}"
ACCUM="${ACCUM:-2}"
SEQ="${SEQ:-256}"
BUILD="${BUILD:-$ROOT/build/release}"
for b in cli/anvil coordinator/anvil-coordinator worker/anvil-worker; do
  [[ -x "$BUILD/$b" ]] || { echo "cluster.sh: build first ($BUILD/$b missing)" >&2; exit 1; }
done
[[ -f "$MODEL" ]] || { echo "cluster.sh: $MODEL: no such file" >&2; exit 1; }
DATA="$ROOT/data/ner/train.jsonl"
[[ -f "$DATA" ]] || python3 "$ROOT/scripts/data/make_ner.py" --out "$ROOT/data/ner" --seed 42 >/dev/null

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

recipe() {  # recipe OUT_DIR THREADS
  cat <<YAML
model: $MODEL
method: lora
data: {train: $DATA, max_length: $SEQ, shuffle: true}
lora: {rank: 8, alpha: 16, targets: [q, k, v, o, gate, up, down]}
optim: {lr: 2.0e-4}
train: {steps: $STEPS, micro_batch: $MICRO, grad_accum: $ACCUM, threads: $2, seed: 1}
checkpoint: {every: 0}
output: {dir: $1, adapter: [peft]}
YAML
}

"$BUILD/coordinator/anvil-coordinator" --listen 127.0.0.1:0 --db "$work/c.db" --insecure-no-token \
  >"$work/coord.out" 2>"$work/coord.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/coord.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(sed -n 's/.*listening on //p' "$work/coord.out")"
[[ -n "$ADDR" ]] || { echo "cluster.sh: coordinator did not start" >&2; cat "$work/coord.err"; exit 1; }
for i in 0 1; do
  "$BUILD/worker/anvil-worker" --coordinator "$ADDR" --name "bench$i" --threads 1 \
    >"$work/w$i.out" 2>"$work/w$i.err" &
  pids+=($!)
done
sleep 1

# Rate over the steps after the first two (warm-up): tokens / seconds, allreduce share.
rate() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
body = rows[2:]
secs = body[-1]["elapsed_s"] - rows[1]["elapsed_s"]
toks = sum(r["tokens"] for r in body)
ar = sum(r.get("allreduce_s", 0.0) for r in body)
print(f"{toks / secs:.1f} {ar / secs:.4f}")
PY
}

run_job() {  # run_job NAME WORKERS -> "tok/s share"
  local out="$work/$1"
  recipe "$out" 1 >"$work/$1.yaml"
  local job
  job="$("$BUILD/cli/anvil" submit "$work/$1.yaml" --workers "$2" --max-workers "$2" \
    --coordinator "$ADDR" --token-file "$work/tok")"
  "$BUILD/cli/anvil" watch "$job" --coordinator "$ADDR" --token-file "$work/tok" >/dev/null
  rate "$out/metrics.jsonl"
}

run_local() {  # a single process with 2 threads
  local out="$work/$1"
  recipe "$out" 2 >"$work/$1.yaml"
  "$BUILD/cli/anvil" finetune "$work/$1.yaml" --fresh --quiet >/dev/null
  rate "$out/metrics.jsonl"
}

echo none >"$work/tok"  # the coordinator runs with --insecure-no-token: any token passes
one=(); two=(); share=(); loc=()
for r in $(seq "$ROUNDS"); do
  read -r t1 _ < <(run_job "one$r" 1); one+=("$t1")
  read -r t2 s2 < <(run_job "two$r" 2); two+=("$t2"); share+=("$s2")
  read -r tl _ < <(run_local "local$r"); loc+=("$tl")
  echo "round $r: 1 worker $t1 tok/s, 2 workers $t2 tok/s (allreduce $s2 of the step), 1 process x 2 threads $tl tok/s" >&2
done
python3 - "${one[*]}" "${two[*]}" "${share[*]}" "${loc[*]}" <<'PY'
import statistics, sys
one, two, share, loc = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m1, m2, ms, ml = map(statistics.median, (one, two, share, loc))
print("| configuration | tokens/s (median) | vs 1 worker |")
print("|---|---|---|")
print(f"| 1 worker, 1 thread | {m1:.1f} | 1.00x |")
print(f"| 2 workers, 1 thread each (Gloo allreduce {ms*100:.1f}% of the step) | {m2:.1f} | {m2/m1:.2f}x |")
print(f"| 1 process, 2 threads (no cluster) | {ml:.1f} | {ml/m1:.2f}x |")
PY
