#!/usr/bin/env bash
# Side-by-side training speed: anvil train-bench vs PyTorch (torch + transformers + peft, CPU,
# fp32) on SmolLM2-135M, LoRA and full fine-tuning, same threads and batch, alternating one run of
# each engine per method, ROUNDS times; prints medians, ratios and MFU as a Markdown table.
# usage: scripts/bench/vs-pytorch.sh [MODEL.gguf] [THREADS] [ROUNDS]   (env: STEPS, WARMUP, SEQ,
#        BATCH, METHODS="lora full", ANVIL_BIN)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
MODEL="${1:-$MODELS/SmolLM2-135M-Instruct.F32.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-3}"
STEPS="${STEPS:-5}"
WARMUP="${WARMUP:-1}"
SEQ="${SEQ:-256}"
BATCH="${BATCH:-4}"
METHODS="${METHODS:-lora full}"
ANVIL="${ANVIL_BIN:-$ROOT/build/release/cli/anvil}"
[[ -x "$ANVIL" ]] || { echo "vs-pytorch: build first ($ANVIL missing)" >&2; exit 1; }
[[ -f "$MODEL" ]] || { echo "vs-pytorch: $MODEL: no such file" >&2; exit 1; }

VENV="$ROOT/build/torch-venv"
REQS=("torch==2.5.1" "peft==0.13.2" "transformers==4.46.3" "gguf" "numpy")
# shellcheck source=../reference/ensure_venv.sh
source "$ROOT/scripts/reference/ensure_venv.sh"
ensure_venv "$VENV" "${REQS[@]}"
PY="$ANVIL_VENV_PY"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
common=(--seq "$SEQ" --batch "$BATCH" --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP")
for ((i = 0; i < ROUNDS; i++)); do
  for m in $METHODS; do
    "$ANVIL" train-bench "$MODEL" --method "$m" "${common[@]}" | grep '^{' >>"$out"
    "$PY" "$ROOT/scripts/bench/torch_train_bench.py" --gguf "$MODEL" --method "$m" "${common[@]}" \
      | grep '^{' >>"$out"
  done
done
"$PY" - "$out" "$MODEL" "$THREADS" "$ROUNDS" "$STEPS" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
model, threads, rounds, steps = os.path.basename(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def med(engine, method, key):
    v = [r[key] for r in rows if r["engine"] == engine and r["method"] == method and key in r]
    return statistics.median(v) if v else float("nan")
t = next((r for r in rows if r["engine"] == "pytorch"), {})
print(f"model {model}, {threads} threads, seq {rows[0]['seq']} x batch {rows[0]['batch']}, fp32; "
      f"medians of {rounds} alternating rounds, each the median step of {steps} after warmup; "
      f"PyTorch {t.get('torch')} + transformers {t.get('transformers')}, attention {t.get('attn')}, "
      f"AdamW {t.get('optimizer')}, weights {t.get('weights')}; anvil GEMM "
      f"{next((r.get('gemm') for r in rows if r['engine'] == 'anvil'), '?')}")
print("| method | anvil tok/s | PyTorch tok/s | ratio | anvil MFU | PyTorch MFU | GFLOP/step "
      "| anvil GEMM peak GFLOP/s | torch.mm peak GFLOP/s | loss_first anvil / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["method"] for r in rows):
    a, p = med("anvil", m, "tokens_per_s"), med("pytorch", m, "tokens_per_s")
    print(f"| {m} | {a:.1f} | {p:.1f} | {a / p:.2f}x | {med('anvil', m, 'mfu'):.3f} "
          f"| {med('pytorch', m, 'mfu'):.3f} | {med('anvil', m, 'gflop_per_step'):.1f} "
          f"| {med('anvil', m, 'gemm_peak_gflops'):.1f} | {med('pytorch', m, 'gemm_peak_gflops'):.1f} "
          f"| {med('anvil', m, 'loss_first'):.4f} / {med('pytorch', m, 'loss_first'):.4f} |")
PY
