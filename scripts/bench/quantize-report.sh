#!/usr/bin/env bash
# Size and perplexity per weight type: `anvil quantize` makes Q8_0, Q4_0 and Q4_1 (default and
# --pure) from the F32 SmolLM2 copy, then `anvil perplexity` scores each file, the F32/F16 copies
# (the F16 one made by llama.cpp's quantizer: anvil quantize writes only Q types) and the Q4_1
# download the F32 copy was dequantized from, on the same text, context and chunks. Prints a
# Markdown table (and writes it to --out). Perplexity is not a timing: a busy machine is fine.
# usage: scripts/bench/quantize-report.sh [--text FILE] [--ctx N] [--chunks N] [--threads N]
#                                         [--out FILE]
# env: ANVIL_BIN (default build/release/cli/anvil), ANVIL_MODELS (default ~/.cache/anvil/models)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
ANVIL="${ANVIL_BIN:-$ROOT/build/release/cli/anvil}"
TEXT=/usr/share/common-licenses/GPL-3
CTX=512
CHUNKS=8
THREADS=2
OUT=""
while (($#)); do
  case "$1" in
    --text) TEXT="$2"; shift 2 ;;
    --ctx) CTX="$2"; shift 2 ;;
    --chunks) CHUNKS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n 2,10p "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "quantize-report: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$ANVIL" ]] || { echo "quantize-report: build first ($ANVIL missing)" >&2; exit 1; }
F32="$MODELS/SmolLM2-135M-Instruct.F32.gguf"
F16="$MODELS/SmolLM2-135M-Instruct.F16.gguf"
Q41="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"  # the download the F32 copy was made from
for f in "$F32" "$F16" "$Q41" "$TEXT"; do
  [[ -f "$f" ]] || { echo "quantize-report: $f missing (scripts/test.sh makes the model copies)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rows=("F32|$F32|llama.cpp copy (the input below)" "F16|$F16|llama.cpp copy"
      "Q4_1|$Q41|the Hugging Face download")
for t in q8_0 q4_0 q4_1; do
  T="${t^^}"
  "$ANVIL" quantize "$F32" "$work/$t.gguf" --type "$t" >&2
  rows+=("$T|$work/$t.gguf|anvil quantize --type $t")
  if [[ "$t" != q8_0 ]]; then  # for Q8_0, --pure gives the same file
    "$ANVIL" quantize "$F32" "$work/${t}_pure.gguf" --type "$t" --pure >&2
    rows+=("$T pure|$work/${t}_pure.gguf|anvil quantize --type $t --pure")
  fi
done

f32_size=$(stat -c %s "$F32")
table="| type | made by | size (MiB) | vs F32 | PPL ($CHUNKS chunks of $CTX) | ± | time (s) |
|---|---|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  IFS='|' read -r name file how <<<"$row"
  size=$(stat -c %s "$file")
  t0=$(date +%s.%N)
  line="$("$ANVIL" perplexity "$file" --file "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" \
          --threads "$THREADS" 2>/dev/null | grep 'Final estimate')"
  t1=$(date +%s.%N)
  ppl=$(sed -E 's/.*PPL = ([0-9.]+).*/\1/' <<<"$line")
  err=$(sed -E 's/.*\+\/- ([0-9.]+).*/\1/' <<<"$line")
  table+="
| $name | $how | $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}') | $(awk -v s="$size" -v f="$f32_size" 'BEGIN{printf "%.3f", s/f}') | $ppl | $err | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') |"
  echo "done: $name PPL $ppl" >&2
done
header="SmolLM2-135M-Instruct, text $(basename "$TEXT"), ctx $CTX, $CHUNKS chunks, $THREADS threads, $(date -u +%Y-%m-%d)"
report="$header

$table"
echo "$report"
[[ -z "$OUT" ]] || printf '%s\n' "$report" >"$OUT"
