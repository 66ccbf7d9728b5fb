#!/usr/bin/env python3
"""llama.cpp side of the generation-eval speed comparison (scripts/bench/eval.sh).

Reads the prompts `anvil eval MODEL TASK --dump-prompts FILE` wrote (JSONL: id, prompt as the
chat template renders it, max_tokens, stop strings) and answers each greedily through
llama-cpp-python's llama.cpp bindings, the way anvil's harness does (model/generate.cc): clear
the KV cache, tokenize the prompt text (no BOS added, special tokens parsed), evaluate it in one
batch, then up to max_tokens argmax steps, stopping at an end-of-generation token or a stop
string (the text is cut there), each token's piece rendered with special tokens; the prediction
is the text stripped of surrounding whitespace. The whole loop over the records is timed (the
model load is not, as anvil's "N records in S s" does not count it).

Prints one JSON line {"engine":"llama.cpp","examples":N,"seconds":S,"examples_per_s":R,...} and
writes the predictions (JSONL: id, prediction) to --out.

Usage: build/ref-venv/bin/python scripts/bench/eval.py PROMPTS.jsonl MODEL.gguf --threads 2
       --out preds.jsonl
"""

import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import llamacpp_golden as G  # noqa: E402  (the shared low-level llama.cpp wrapper)
import llama_cpp as L  # noqa: E402


def piece(vocab, tok: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(vocab, tok, buf, len(buf), 0, True)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = L.llama_token_to_piece(vocab, tok, buf, len(buf), 0, True)
    return buf.raw[:n]


def answer(eng, rec) -> str:
    ids = eng.tokenize(rec["prompt"], False, True)
    eng.clear()
    z = None
    for start in range(0, len(ids), eng.n_batch):  # the prompt in n_batch pieces
        z = eng.decode(ids[start:start + eng.n_batch], start)[0]
    pos = len(ids)
    room = eng.cparams.n_ctx - len(ids)
    text = b""
    stops = [s.encode() for s in rec["stop"]]
    for i in range(min(rec["max_tokens"], room)):
        t = G.argmax_lowest(z)
        if L.llama_vocab_is_eog(eng.vocab, t):
            break
        text += piece(eng.vocab, t)
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
            break
        if i + 1 == rec["max_tokens"]:
            break
        z = eng.decode([t], pos)[0]
        pos += 1
    return text.decode("utf-8", errors="replace").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prompts")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kv-f32", action="store_true",
                    help="F32 KV cache and flash attention off, as anvil computes attention "
                         "(llama.cpp's defaults: F16 KV, flash attention auto)")
    a = ap.parse_args()
    recs = [json.loads(l) for l in open(a.prompts, encoding="utf-8") if l.strip()]
    G.init_llama(False)
    eng = G.Engine(Path(a.model), n_ctx=2048, n_batch=512, threads=a.threads, kv_f32=a.kv_f32,
                   flash_attn=False if a.kv_f32 else None, n_outputs_max_per_seq=1)
    t0 = time.perf_counter()
    preds = [{"id": r["id"], "prediction": answer(eng, r)} for r in recs]
    dt = time.perf_counter() - t0
    with open(a.out, "w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(json.dumps({"engine": "llama.cpp", "model": Path(a.model).name, "threads": a.threads,
                      "examples": len(recs), "seconds": round(dt, 4),
                      "examples_per_s": round(len(recs) / dt, 4),
                      "kv_types": eng.kv_types, "flash_attn": eng.flash_attn}))
    eng.close()


if __name__ == "__main__":
    main()
