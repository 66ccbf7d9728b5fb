#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors for bitwise parity checks against anvil.

Loads the model exactly as llamacpp_golden.py does (flash attention off, F32 K/V cache, n_batch
512, no extra buffer types, 2 threads), installs a scheduler eval callback (cb_eval) that asks
for every graph node, and writes each computed node as raw float32 in the layout of
tests/tools/dump_activations.cc: e<eval>_<name>.f32 plus index.tsv
("eval name layer rows cols file"). llama.cpp names tensors "<name>-<layer>"; a name that
occurs more than once in one graph (e.g. Qcur after the matmul, the reshape and the rope) gets
the suffix "#<op>" from the second occurrence on, so the last one is still distinguishable.
Views keep their parent's data; non-contiguous tensors are gathered with their strides.

Usage (from the repo root):
  build/ref-venv/bin/python scripts/reference/llamacpp_dump.py --model M.gguf \
      --tokens 504,3575,282,4649,314 [--then 28,3] --out DIR [--all] [--all-logits]
Without --all only the names anvil also reports (and kq / kq_soft_max) are written.
"""

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np
import llama_cpp as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llamacpp_golden as G  # noqa: E402  (Engine: the one place the oracle settings live)

GGML_MAX_DIMS = 4
GGML_MAX_OP_PARAMS = 64
GGML_MAX_SRC = 10
GGML_MAX_NAME = 64


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor as in the venv's include/ggml.h."""
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


_base = ctypes.CDLL(str(Path(L.__file__).parent / "lib" / "libggml-base.so"))
_base.ggml_op_desc.restype = ctypes.c_char_p
_base.ggml_op_desc.argtypes = [ctypes.c_void_p]
GGML_TYPE_F32 = 0

# Names anvil's observer reports (model/llama_model.cc), plus llama.cpp-only attention steps.
WANTED = {"embd", "attn_norm", "Qcur", "Kcur", "Vcur", "kq", "kq_soft_max", "kqv_out",
          "attn_out", "ffn_inp", "ffn_norm", "ffn_gate", "ffn_up", "ffn_swiglu", "ffn_out",
          "l_out", "result_norm", "result_output"}
# llama.cpp name (with the "#<op>" suffix of a repeated name) -> anvil's observer name.
ALIASES = {"embd": "inp_embd", "Qcur#ROPE": "Qcur_rope", "Kcur#ROPE": "Kcur_rope"}


class Dumper:
    def __init__(self, out: Path, dump_all: bool):
        self.out = out
        self.dump_all = dump_all
        self.eval = 0
        self.seen = {}
        self.index = open(out / "index.tsv", "w")
        self.cb = L.ggml_backend_sched_eval_callback(self._callback)

    def new_eval(self, e: int):
        self.eval = e
        self.seen = {}

    def _callback(self, t_ptr, ask, user_data):  # noqa: ARG002
        if ask:
            return True  # compute every node separately and show it to us
        t = GgmlTensor.from_address(t_ptr)
        full = t.name.decode("utf-8", "replace")
        base, _, layer = full.rpartition("-")
        if not base or not layer.isdigit():
            base, layer = full, "-1"
        if not (self.dump_all or base in WANTED) or t.type != GGML_TYPE_F32 or not t.data:
            return True
        op = _base.ggml_op_desc(t_ptr).decode()
        n = self.seen.get(full, 0)
        self.seen[full] = n + 1
        name = base if n == 0 else f"{base}#{op}"
        name = ALIASES.get(name, name)
        ne = [t.ne[i] for i in range(GGML_MAX_DIMS)]
        nb = [t.nb[i] for i in range(GGML_MAX_DIMS)]
        span = sum((ne[i] - 1) * nb[i] for i in range(GGML_MAX_DIMS)) + 4
        raw = (ctypes.c_char * span).from_address(t.data)
        arr = np.lib.stride_tricks.as_strided(
            np.frombuffer(raw, dtype=np.float32), shape=ne[::-1], strides=nb[::-1])
        arr = np.ascontiguousarray(arr)
        cols = ne[0]
        rows = int(np.prod(ne[1:]))
        fname = f"e{self.eval}_{name}" + ("" if layer == "-1" else f"-{layer}") + ".f32"
        arr.tofile(self.out / fname)
        self.index.write(f"{self.eval}\t{name}\t{layer}\t{rows}\t{cols}\t{fname}\t{op}\t"
                         f"{','.join(map(str, ne))}\n")
        return True

    def close(self):
        self.index.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma list, evaluated as one batch (eval 0)")
    ap.add_argument("--then", default="", help="comma list, each evaluated alone (evals 1..)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--all", action="store_true",
                    help="dump every F32 node, not just anvil's names")
    ap.add_argument("--all-logits", action="store_true",
                    help="eval 0 computes logits for every row")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    toks = [int(x) for x in a.tokens.split(",") if x]
    then = [int(x) for x in a.then.split(",") if x]
    G.init_llama(False)
    dumper = Dumper(out, a.all)
    # Engine builds the context from cparams inside __init__, so the callback must go in first:
    # patch llama_context_default_params for the duration of the construction.
    orig = L.llama_context_default_params

    def with_cb():
        cp = orig()
        cp.cb_eval = dumper.cb
        cp.cb_eval_user_data = None
        return cp

    L.llama_context_default_params = with_cb
    try:
        eng = G.Engine(Path(a.model), n_ctx=512, n_batch=512)
    finally:
        L.llama_context_default_params = orig
    with eng:
        dumper.new_eval(0)
        eng.decode(toks, 0, list(range(len(toks))) if a.all_logits else None)
        pos = len(toks)
        for i, t in enumerate(then):
            dumper.new_eval(i + 1)
            eng.decode([t], pos)
            pos += 1
    dumper.close()
    print(f"wrote {out}/index.tsv")


if __name__ == "__main__":
    main()
