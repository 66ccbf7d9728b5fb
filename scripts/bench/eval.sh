#!/usr/bin/env bash
# Generation-eval speed: examples/s of `anvil eval` vs the same eval through llama-cpp-python
# (scripts/bench/eval.py) on the same GGUF, the same prompts (rendered once by anvil's chat
# template: `anvil eval --dump-prompts`), greedy, same threads; one run of each, alternating,
# ROUNDS times; prints medians, the ratio, and how many predictions the two engines agree on.
# llama.cpp runs with an F32 KV cache and flash attention off, the attention arithmetic anvil
# does (with its defaults, F16 KV and flash attention, greedy answers drift apart after a few
# dozen tokens); LLAMA_DEFAULTS=1 keeps llama.cpp's defaults instead.
# usage: scripts/bench/eval.sh [LIMIT] [ROUNDS] [MODEL.gguf] [TASK.yaml]   (THREADS=2 by default)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
LIMIT="${1:-20}"
ROUNDS="${2:-3}"
MODEL="${3:-$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf}"
TASK="${4:-$ROOT/tasks/ner.yaml}"
THREADS="${THREADS:-2}"
ANVIL="${ANVIL_BIN:-$ROOT/build/release/cli/anvil}"
[[ -x "$ANVIL" ]] || { echo "bench/eval: build first ($ANVIL missing)" >&2; exit 1; }
"$ROOT/scripts/reference/ensure_venv.sh" >/dev/null
PY="$ROOT/build/ref-venv/bin/python"
LLAMA_FLAGS=(--kv-f32)
[[ "${LLAMA_DEFAULTS:-0}" == 1 ]] && LLAMA_FLAGS=()

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$ANVIL" eval "$MODEL" "$TASK" --limit "$LIMIT" --dump-prompts "$work/prompts.jsonl"
for ((i = 0; i < ROUNDS; i++)); do
  "$ANVIL" eval "$MODEL" "$TASK" --limit "$LIMIT" --threads "$THREADS" --out "$work/anvil.json" \
    >/dev/null 2>"$work/anvil.err"
  # stderr ends with "\r<task>: N records in S s"
  tr '\r' '\n' <"$work/anvil.err" | sed -n 's/^.*: \([0-9]*\) records in \([0-9.]*\) s$/{"engine":"anvil","examples":\1,"seconds":\2}/p' >>"$work/rows"
  "$PY" "$ROOT/scripts/bench/eval.py" "$work/prompts.jsonl" "$MODEL" --threads "$THREADS" \
    "${LLAMA_FLAGS[@]}" --out "$work/llama.jsonl" | grep '^{' >>"$work/rows"
done
"$PY" - "$work" "$MODEL" "$TASK" "$THREADS" "$ROUNDS" <<'PY'
import json, os, statistics, sys
work, model, task, threads, rounds = sys.argv[1:]
rows = [json.loads(l) for l in open(os.path.join(work, "rows"))]
def med(engine):
    rs = [r for r in rows if r["engine"] == engine]
    if len(rs) != int(rounds):
        sys.exit(f"bench/eval: {engine}: {len(rs)} of {rounds} rounds finished")
    return statistics.median(r["examples"] / r["seconds"] for r in rs), rs[0]["examples"]
a, n = med("anvil")
l, _ = med("llama.cpp")
ours = {e["id"]: e["prediction"] for e in json.load(open(os.path.join(work, "anvil.json")))["examples"]}
theirs = {p["id"]: p["prediction"] for p in map(json.loads, open(os.path.join(work, "llama.jsonl")))}
same = sum(ours[k] == theirs.get(k) for k in ours)
differ = [k for k in ours if ours[k] != theirs.get(k)]
kv = [r for r in rows if r["engine"] == "llama.cpp"][0]
print(f"model {os.path.basename(model)}, task {os.path.basename(task)}, {n} records, greedy, "
      f"{threads} threads, medians of {rounds} alternating rounds; llama.cpp KV {kv['kv_types']}, "
      f"flash attention {kv['flash_attn']}")
print("| model | task | records | threads | anvil examples/s | llama-cpp-python examples/s | ratio | same predictions |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {os.path.basename(model)} | {os.path.basename(task)} | {n} | {threads} | {a:.3f} | {l:.3f} | "
      f"{a / l:.2f}x | {same}/{len(ours)} |")
if differ:
    print("predictions differ on:", ", ".join(differ[:20]))
PY
