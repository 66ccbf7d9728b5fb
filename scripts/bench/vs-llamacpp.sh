#!/usr/bin/env bash
# Side-by-side speed: anvil vs llama.cpp (llama-cpp-python) on the same GGUF, same threads,
# alternating one repetition of each, ROUNDS times; prints medians and ratios as a Markdown row.
# usage: scripts/bench/vs-llamacpp.sh [MODEL.gguf] [THREADS] [ROUNDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
MODEL="${1:-$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${2:-2}"
ROUNDS="${3:-5}"
ANVIL="${ANVIL_BIN:-$ROOT/build/release/cli/anvil}"
[[ -x "$ANVIL" ]] || { echo "vs-llamacpp: build first ($ANVIL missing)" >&2; exit 1; }
"$ROOT/scripts/reference/ensure_venv.sh" >/dev/null
PY="$ROOT/build/ref-venv/bin/python"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for ((i = 0; i < ROUNDS; i++)); do
  "$ANVIL" bench "$MODEL" --threads "$THREADS" --reps 1 2>/dev/null | grep '^{' >>"$out"
  "$PY" "$ROOT/scripts/bench/vs_llamacpp.py" "$MODEL" --threads "$THREADS" --reps 1 | grep '^{' >>"$out"
done
"$PY" - "$out" "$MODEL" "$THREADS" "$ROUNDS" <<'PY'
import json, statistics, sys, os
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(engine, key):
    return statistics.median(r[key] for r in rows if r["engine"] == engine)
a_pre, a_dec = med("anvil", "prefill_tok_s"), med("anvil", "decode_tok_s")
l_pre, l_dec = med("llama.cpp", "prefill_tok_s"), med("llama.cpp", "decode_tok_s")
print(f"model {os.path.basename(sys.argv[2])}, {sys.argv[3]} threads, medians of {sys.argv[4]} alternating rounds")
print("| model | threads | anvil prefill tok/s | llama.cpp prefill tok/s | ratio | anvil decode tok/s | llama.cpp decode tok/s | ratio |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {os.path.basename(sys.argv[2])} | {sys.argv[3]} | {a_pre:.1f} | {l_pre:.1f} | {a_pre/l_pre:.2f}x | {a_dec:.1f} | {l_dec:.1f} | {a_dec/l_dec:.2f}x |")
PY
