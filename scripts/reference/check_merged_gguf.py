#!/usr/bin/env python3
"""Checks anvil's GGUF exports (train/export.h) with llama.cpp; a manual check, not run in CI.

1. llama.cpp loads the merged model (WriteMergedGguf) and its logits are finite.
2. With --base and --lora: llama.cpp loads the base, applies the LoRA adapter GGUF
   (WriteLoraGguf) at run time with scale 1, and its logits match the merged model's. Use an F32
   base (e.g. the base itself merged with no adapter, which dequantizes it) so the comparison is
   not dominated by quantized matmuls.
3. With --ours JSON: logits anvil computed for the same tokens ({"logits": {KEY: [[...], ...]}})
   match llama.cpp's on the merged model.

Usage (from the repo root):
  build/ref-venv/bin/python scripts/reference/check_merged_gguf.py --merged M.gguf \
      [--base B.gguf --lora L.gguf] [--ours ours.json --ours-key merged_f32] \
      [--tokens 1,40,7,99,12] [--tol 1e-3]
Exit status 0 when every check passes.
"""

import argparse
import ctypes
import json
import sys
from pathlib import Path

import numpy as np
import llama_cpp as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llamacpp_golden as G  # noqa: E402  (Engine: the one place the oracle settings live)


def all_logits(eng: "G.Engine", tokens):
    eng.clear()
    return eng.decode(tokens, want=list(range(len(tokens))))


def report(name: str, err: float, tol: float) -> bool:
    ok = err <= tol
    print(f"[{'ok' if ok else 'FAIL'}] {name}: max abs err {err:.3g} (tolerance {tol:g})")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--merged", required=True, type=Path)
    ap.add_argument("--base", type=Path)
    ap.add_argument("--lora", type=Path)
    ap.add_argument("--ours", type=Path)
    ap.add_argument("--ours-key", default="merged_f32")
    ap.add_argument("--tokens", default="1,40,7,99,12,250,3")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    ok = True

    with G.Engine(args.merged, n_ctx=64, n_batch=64) as eng:
        merged = all_logits(eng, tokens)
    finite = bool(np.isfinite(merged).all())
    print(f"[{'ok' if finite else 'FAIL'}] llama.cpp loads {args.merged} "
          f"({merged.shape[1]} logits per token, all finite: {finite})")
    ok &= finite

    if args.base and args.lora:
        with G.Engine(args.base, n_ctx=64, n_batch=64) as eng:
            adapter = L.llama_adapter_lora_init(eng.model, str(args.lora).encode())
            if not adapter:
                print(f"[FAIL] llama.cpp refused the adapter {args.lora}:\n{G.log_tail()}")
                return 1
            adapters = (L.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(1.0)
            if L.llama_set_adapters_lora(eng.ctx, adapters, 1, scales) != 0:
                print("[FAIL] llama_set_adapters_lora failed")
                return 1
            with_lora = all_logits(eng, tokens)
            L.llama_adapter_lora_free(adapter)
        effect = float(np.abs(with_lora - merged).max())
        ok &= report(f"llama.cpp base + {args.lora.name} == merged", effect, args.tol)

    if args.ours:
        ours = np.array(json.loads(args.ours.read_text())["logits"][args.ours_key], np.float32)
        ok &= report(f"anvil logits ({args.ours_key}) == llama.cpp on the merged file",
                     float(np.abs(ours - merged).max()), args.tol)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
