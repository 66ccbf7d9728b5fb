#!/usr/bin/env python3
"""llama.cpp side of the anvil-vs-llama.cpp speed comparison (the anvil side is `anvil bench`).

Per repetition:
  prefill: clear the KV cache, evaluate a 512-token prompt (the first 512 tokens of the GPL-3
           text) in one batch (n_batch = n_ubatch = 512), logits for the last position only;
           prefill_tok_s = 512 / time of that eval call.
  decode:  clear the KV cache, evaluate a short prompt (the first 16 GPL-3 tokens, untimed), then
           generate 128 tokens one at a time, greedy (argmax, untimed), each fed back with one
           eval call; decode_tok_s = 128 / total time of those 128 eval calls.
Only the eval calls (llama_decode + llama_synchronize) are timed. One untimed warm-up of each
phase runs first. llama.cpp defaults except: threads, n_ctx (1024), n_batch/n_ubatch (512),
no GPU offload, and the CPU extra buffer types (repack/AMX) off unless --extra-bufts (on in
llama.cpp by default, but llama-cpp-python 0.3.36 segfaults with them on Q4_1 on AMX CPUs).
The KV type and flash-attention state llama.cpp actually used are read from its log.

Prints one JSON line per repetition:
  {"engine":"llama.cpp","model":...,"threads":2,"prefill_tok_s":...,"decode_tok_s":..., ...}

Usage: build/ref-venv/bin/python scripts/bench/vs_llamacpp.py MODEL.gguf [--threads 2] [--reps 5]
(scripts/reference/ensure_venv.sh sets up build/ref-venv.)
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import llamacpp_golden as G  # noqa: E402  (the shared low-level llama.cpp wrapper)
import llama_cpp as L  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--short-prompt", type=int, default=16, help="tokens before decoding")
    ap.add_argument("--extra-bufts", action="store_true", help="enable CPU repack/AMX buffer types")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    G.init_llama(a.verbose)
    n_batch = max(512, a.n_prompt)
    eng = G.Engine(Path(a.model), n_ctx=max(1024, a.n_prompt, a.short_prompt + a.n_gen + 1),
                   n_batch=n_batch, threads=a.threads, kv_f32=False, flash_attn=None,
                   n_outputs_max_per_seq=1, extra_bufts=a.extra_bufts)
    text = G.GPL3.read_text(encoding="utf-8")
    toks = eng.tokenize(text, True, False)
    if len(toks) < a.n_prompt:
        sys.exit("error: not enough GPL-3 tokens")
    prompt = toks[: a.n_prompt]
    short = toks[: a.short_prompt]

    def prefill():
        eng.clear()
        return eng.decode(prompt, 0, timed=True)

    def decode():
        eng.clear()
        z = eng.decode(short, 0)[0]
        pos, total = len(short), 0.0
        for _ in range(a.n_gen):
            t = G.argmax_lowest(z)
            total += eng.decode([t], pos, timed=True)
            z = eng.logits_last()
            pos += 1
        return total

    prefill()
    eng.clear()
    z = eng.decode(short, 0)[0]
    for i in range(8):  # short decode warm-up
        eng.decode([G.argmax_lowest(z)], len(short) + i)
        z = eng.logits_last()

    kv = eng.kv_types
    for r in range(a.reps):
        tp = prefill()
        td = decode()
        print(json.dumps({
            "engine": "llama.cpp", "model": Path(a.model).name, "threads": a.threads,
            "prefill_tok_s": round(a.n_prompt / tp, 2), "decode_tok_s": round(a.n_gen / td, 2),
            "rep": r, "n_prompt": a.n_prompt, "n_gen": a.n_gen, "short_prompt": len(short),
            "n_ctx": eng.cparams.n_ctx, "n_batch": n_batch, "n_ubatch": eng.cparams.n_ubatch,
            "kv_type": "/".join(kv) if kv else "default", "flash_attn": eng.flash_attn or "auto",
            "use_extra_bufts": a.extra_bufts, "llama_cpp_python": L.__version__,
        }), flush=True)
    eng.close()


if __name__ == "__main__":
    main()
