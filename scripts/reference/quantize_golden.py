#!/usr/bin/env python3
"""llama.cpp's quantizer as the oracle for `anvil quantize` (issue 7; notes §6).

Quantizes the F32 SmolLM2 copy (SmolLM2-135M-Instruct.F32.gguf, made by llamacpp_golden.py from
the Q4_1 download) with llama-cpp-python's low-level `llama_model_quantize` and
`llama_model_quantize_default_params()` to Q8_0, Q4_0 and Q4_1, each with and without `pure`
(and the F16 copy to Q4_0: q4_0_from_f16), and writes one small fixture per case to
tests/fixtures/quantize/<case>.json:

  input      file name, size and sha256 of the input (the C++ test checks it has the same one)
  tensors    in output order: name, ggml type id and name, shape (ne), byte size, sha256 of the
             tensor bytes and the first 64 bytes in hex
  metadata   keys whose value differs from the input's (and keys added or removed), with values,
             and the output's key order
  load       the quantized file loaded in llama.cpp: tokens of a prompt, one eval, the argmax and
             max logit of the last position

plus tests/fixtures/quantize/nan_input.json: what llama_model_quantize does with an F32 input in
which one weight is NaN (it refuses it: return code and the log line), and merge_lora.json: the
F32 model's logits for the prompt with a LoRA adapter (rank 2, alpha 4, on attn_q, attn_v and
ffn_down of every layer, values from an integer formula the C++ test recomputes) applied at run
time by llama.cpp (llama_adapter_lora_init + llama_set_adapters_lora): the oracle for `anvil
merge`, whose merged file must give the same logits in our runtime.

Usage: quantize_golden.py [--models DIR] [--out-dir DIR] [--only q8_0,q4_0,...] [--no-nan]
"""
import argparse
import ctypes
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import llama_cpp as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llamacpp_golden as G  # noqa: E402  (Engine, logging; same pinned llama.cpp)

REPO = Path(__file__).resolve().parents[2]
F32_NAME = G.F32_NAME
PROMPT = "The capital of France is"
THREADS = 2
HEAD_BYTES = 64

CASES = {  # fixture stem -> (llama_ftype attribute, pure, input file)
    "q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", False, G.F32_NAME),
    "q8_0_pure": ("LLAMA_FTYPE_MOSTLY_Q8_0", True, G.F32_NAME),
    "q4_0": ("LLAMA_FTYPE_MOSTLY_Q4_0", False, G.F32_NAME),
    "q4_0_pure": ("LLAMA_FTYPE_MOSTLY_Q4_0", True, G.F32_NAME),
    "q4_1": ("LLAMA_FTYPE_MOSTLY_Q4_1", False, G.F32_NAME),
    "q4_1_pure": ("LLAMA_FTYPE_MOSTLY_Q4_1", True, G.F32_NAME),
    # F16 input (the F16 copy llamacpp_golden.py makes): F16 -> F32 -> Q4_0.
    "q4_0_from_f16": ("LLAMA_FTYPE_MOSTLY_Q4_0", False, G.F16_NAME),
}

# ggml type id -> (name, block elements, block bytes) for the types these files can hold.
GGML_TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
              6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34),
              10: ("q2_k", 256, 84), 11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144),
              13: ("q5_k", 256, 176), 14: ("q6_k", 256, 210), 30: ("bf16", 1, 2)}
VALUE_TYPES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
               12: "float64"}
SCALAR_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}


def read_gguf(path: Path):
    """-> (metadata {key: (type name, value)} in file order, tensors [dict],
    {name: absolute data offset})."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, blob, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def rstr():
        nonlocal pos
        (n,) = rd("Q")
        s = blob[pos:pos + n].decode("utf-8", "surrogateescape")
        pos += n
        return s

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("IQ")
            return [VALUE_TYPES[et]] + [rval(et) for _ in range(n)]
        (v,) = rd(SCALAR_FMT[t])
        return v

    assert blob[:4] == b"GGUF", f"{path}: not a GGUF file"
    pos = 4
    (_version,) = rd("I")
    n_t, n_kv = rd("QQ")
    meta = {}
    for _ in range(n_kv):
        k = rstr()
        (t,) = rd("I")
        meta[k] = (VALUE_TYPES[t], rval(t))
    infos = []
    for _ in range(n_t):
        name = rstr()
        (nd,) = rd("I")
        shape = list(rd("Q" * nd))
        (tt,) = rd("I")
        (off,) = rd("Q")
        infos.append((name, shape, tt, off))
    align = meta.get("general.alignment", ("uint32", 32))[1]
    data0 = (pos + align - 1) // align * align
    tensors = []
    offsets = {}
    for name, shape, tt, off in infos:
        offsets[name] = data0 + off
        tname, be, bb = GGML_TYPES[tt]
        n = int(np.prod(shape))
        size = n // be * bb
        b = blob[data0 + off:data0 + off + size]
        tensors.append({"name": name, "type": tt, "type_name": tname, "shape": shape,
                        "bytes": size, "sha256": hashlib.sha256(b).hexdigest(),
                        "head": b[:HEAD_BYTES].hex()})
    return meta, tensors, offsets


def jsonable(v):
    if isinstance(v, float):
        return G.f32(v) if np.isfinite(v) else str(v)
    return v


def meta_diff(inp: dict, out: dict) -> dict:
    changed = {}
    for k, (t, v) in out.items():
        if k not in inp or inp[k] != (t, v):
            if t == "array":
                v = {"elem_type": v[0], "n": len(v) - 1,
                     "sha256": hashlib.sha256(json.dumps(v[1:]).encode()).hexdigest()}
            changed[k] = {"type": t, "value": jsonable(v)}
    removed = sorted(k for k in inp if k not in out)
    return {"changed_or_added": changed, "removed": removed, "key_order": list(out)}


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def quantize(src: Path, dst: Path, ftype_attr: str, pure: bool) -> int:
    qp = L.llama_model_quantize_default_params()
    qp.nthread = THREADS
    qp.ftype = getattr(L, ftype_attr)
    qp.pure = pure
    G._LOG.clear()
    return L.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(qp))


def load_check(path: Path) -> dict:
    with G.Engine(path, n_ctx=64, n_batch=64) as eng:
        toks = eng.tokenize(PROMPT, add_special=True, parse_special=False)
        z = eng.decode(toks)[0]
        top = int(G.argmax_lowest(z))
        return {"loads": True, "prompt": PROMPT, "tokens": toks, "argmax": top,
                "max_logit": G.f32(z[top]), "settings": eng.settings()}


def params_record() -> dict:
    qp = L.llama_model_quantize_default_params()
    return {"nthread": THREADS, "allow_requantize": bool(qp.allow_requantize),
            "quantize_output_tensor": bool(qp.quantize_output_tensor),
            "only_copy": bool(qp.only_copy), "keep_split": bool(qp.keep_split),
            "imatrix": None}


def write_json(out_dir: Path, stem: str, obj):
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"{stem}.json"
    tmp = p.with_suffix(".json.tmp")
    tensors = obj.get("tensors")
    if tensors is None:
        text = json.dumps(obj, indent=1)
    else:  # one compact line per tensor keeps the fixture small and diffable
        head = json.dumps({k: v for k, v in obj.items() if k != "tensors"}, indent=1)
        lines = ",\n".join("  " + json.dumps(t, separators=(",", ":")) for t in tensors)
        text = head[:-2] + ',\n "tensors": [\n' + lines + "\n ]\n}"
    tmp.write_text(text + "\n")
    os.replace(tmp, p)
    print(f"wrote {p} ({p.stat().st_size} bytes)")


def nan_case(src: Path, tmpdir: Path, offsets: dict) -> dict:
    """Poke a NaN into one F32 weight and see what llama_model_quantize does with it."""
    victim, elem = "blk.0.attn_q.weight", 5
    bad = tmpdir / "nan_input.F32.gguf"
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:
        f.seek(offsets[victim] + 4 * elem)
        f.write(struct.pack("<f", float("nan")))
    out = tmpdir / "nan_out.gguf"
    rc = quantize(bad, out, "LLAMA_FTYPE_MOSTLY_Q8_0", False)
    log = "".join(G._LOG)
    log = log.replace(str(tmpdir), "<tmp>")  # keeps the fixture the same from run to run
    lines = [ln.strip() for ln in log.splitlines() if "nan" in ln.lower() or "invalid" in ln.lower()]
    bad.unlink()
    return {"tensor": victim, "element": elem, "ftype": "q8_0", "rc": int(rc),
            "output_written": out.exists(), "log_lines": lines[:6]}

# ---------------------------------------------------------------------------------------------
# merge oracle: llama.cpp applying a LoRA adapter at run time on the F32 base. The adapter's
# values come from an integer formula, exact in float32, that the C++ test recomputes
# (quantize_oracle_test): A[k][j] = ((L*7 + m*13 + k*31 + j*17) % 97 - 48) / 1024,
# B[i][k] = ((L*5 + m*11 + i*19 + k*23) % 89 - 44) / 1024, m = module index in q,k,v,o,gate,up,down.

MERGE_RANK = 2
MERGE_ALPHA = 4.0
MERGE_MODULES = [("attn_q", 0), ("attn_v", 2), ("ffn_down", 6)]


def merge_adapter_arrays(n_layer: int, shapes: dict):
    """-> [(base tensor name, A [r][in] float32, B [out][r] float32)]."""
    out = []
    r = MERGE_RANK
    for layer in range(n_layer):
        for suffix, m in MERGE_MODULES:
            name = f"blk.{layer}.{suffix}.weight"
            n_in, n_out = shapes[name]
            k = np.arange(r)[:, None]
            j = np.arange(n_in)[None, :]
            a = ((layer * 7 + m * 13 + k * 31 + j * 17) % 97 - 48).astype(np.float32) / np.float32(1024)
            i = np.arange(n_out)[:, None]
            k2 = np.arange(r)[None, :]
            b = ((layer * 5 + m * 11 + i * 19 + k2 * 23) % 89 - 44).astype(np.float32) / np.float32(1024)
            out.append((name, a, b))
    return out


def write_adapter_gguf(path: Path, pairs) -> None:
    """A llama.cpp LoRA adapter GGUF (v3, alignment 32): lora_a ne = [in, r], lora_b ne = [r, out]."""
    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kv = [("general.architecture", 8, s("llama")), ("general.type", 8, s("adapter")),
          ("adapter.type", 8, s("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", MERGE_ALPHA))]
    tensors = []
    for name, a, b in pairs:
        tensors.append((name + ".lora_a", [a.shape[1], a.shape[0]], a.tobytes()))
        tensors.append((name + ".lora_b", [b.shape[1], b.shape[0]], b.tobytes()))
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, t, v in kv:
        head += s(k) + struct.pack("<I", t) + v
    off = 0
    data = b""
    for name, ne, raw in tensors:
        head += s(name) + struct.pack("<I", len(ne)) + struct.pack("<" + "Q" * len(ne), *ne)
        head += struct.pack("<IQ", 0, off)
        pad = (-len(raw)) % 32
        data += raw + b"\0" * pad
        off += len(raw) + pad
    head += b"\0" * ((-len(head)) % 32)
    path.write_bytes(head + data)


def merge_case(f32: Path, tmpdir: Path) -> dict:
    meta, tensors, _ = read_gguf(f32)
    shapes = {t["name"]: t["shape"] for t in tensors}
    n_layer = meta["llama.block_count"][1]
    pairs = merge_adapter_arrays(n_layer, shapes)
    adapter = tmpdir / "merge_adapter.gguf"
    write_adapter_gguf(adapter, pairs)
    with G.Engine(f32, n_ctx=64, n_batch=64) as eng:
        toks = eng.tokenize(PROMPT, add_special=True, parse_special=False)
        base = eng.decode(toks)[0]
        G._LOG.clear()
        lora = L.llama_adapter_lora_init(eng.model, str(adapter).encode())
        if not lora:
            sys.exit(f"error: llama.cpp refused the adapter:\n{G.log_tail()}")
        arr = (L.llama_adapter_lora_p_ctypes * 1)(lora)
        scales = (ctypes.c_float * 1)(1.0)
        rc = L.llama_set_adapters_lora(eng.ctx, arr, 1, scales)
        if rc != 0:
            sys.exit(f"error: llama_set_adapters_lora returned {rc}")
        eng.clear()
        z = eng.decode(toks)[0]
        top10 = G.topk(z, 10)
        rec = {"rank": MERGE_RANK, "alpha": MERGE_ALPHA, "user_scale": 1.0,
               "modules": [m for m, _ in MERGE_MODULES], "n_layer": n_layer,
               "formula": "A[k][j]=((L*7+m*13+k*31+j*17)%97-48)/1024, "
                          "B[i][k]=((L*5+m*11+i*19+k*23)%89-44)/1024",
               "adapter_sha256": sha256_file(adapter), "prompt": PROMPT, "tokens": toks,
               "top10_ids": [i for i, _ in top10], "top10_logits": [v for _, v in top10],
               "max_abs_change_vs_base": G.f32(float(np.max(np.abs(z - base)))),
               "base_argmax": int(G.argmax_lowest(base)), "settings": eng.settings()}
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(G.model_dir()))
    ap.add_argument("--out-dir", default=str(REPO / "tests" / "fixtures" / "quantize"))
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--no-nan", action="store_true")
    ap.add_argument("--no-merge", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    G.init_llama(args.verbose)
    src = Path(args.models) / F32_NAME
    if not src.exists():
        sys.exit(f"error: {src} not found (scripts/reference/llamacpp_golden.sh --make-f32-only)")
    out_dir = Path(args.out_dir)
    t0 = time.time()
    in_meta, in_tensors, in_offsets = read_gguf(src)
    bad_in = [t["name"] for t in in_tensors if t["type"] != 0]
    if bad_in:
        sys.exit(f"error: {src} is not all F32: {bad_in[:5]}")
    inputs = {}  # file name -> (path, metadata, input record)

    def input_of(name):
        if name not in inputs:
            p = Path(args.models) / name
            if not p.exists():
                sys.exit(f"error: {p} not found (scripts/reference/llamacpp_golden.sh --make-copies)")
            meta_p, tensors_p, _ = read_gguf(p)
            inputs[name] = (p, meta_p, {"file": name, "size": p.stat().st_size,
                                        "sha256": sha256_file(p), "n_tensors": len(tensors_p)})
        return inputs[name]
    with tempfile.TemporaryDirectory(prefix="anvil-qgold-", dir=os.environ.get("TMPDIR")) as td:
        td = Path(td)
        for stem in [s for s in args.only.split(",") if s]:
            ftype_attr, pure, in_name = CASES[stem]
            in_path, in_meta_c, input_rec = input_of(in_name)
            dst = td / f"{stem}.gguf"
            t1 = time.time()
            rc = quantize(in_path, dst, ftype_attr, pure)
            if rc != 0:
                sys.stderr.write(G.log_tail())
                sys.exit(f"error: llama_model_quantize {stem} failed (rc={rc})")
            meta, tensors, _ = read_gguf(dst)
            try:
                load = load_check(dst)
            except G.LoadError as e:
                load = {"loads": False, "error": str(e)[-2000:]}
            counts = {}
            for t in tensors:
                counts[t["type_name"]] = counts.get(t["type_name"], 0) + 1
            rec = {"generator": "scripts/reference/quantize_golden.py",
                   "llama_cpp_python": L.__version__, "params": params_record(),
                   "input": input_rec}
            rec.update({"case": stem, "llama_ftype": int(getattr(L, ftype_attr)),
                        "ftype_name": ftype_attr, "pure": pure,
                        "output": {"size": dst.stat().st_size, "sha256": sha256_file(dst),
                                   "type_counts": dict(sorted(counts.items()))},
                        "metadata": meta_diff(in_meta_c, meta), "load": load,
                        "tensors": tensors})
            write_json(out_dir, stem, rec)
            print(f"  {stem}: {counts}, {dst.stat().st_size} bytes, load={load['loads']}, "
                  f"{time.time() - t1:.1f}s")
            dst.unlink()
        if not args.no_nan:
            rec = {"generator": "scripts/reference/quantize_golden.py",
                   "llama_cpp_python": L.__version__, "params": params_record(),
                   "input": input_of(F32_NAME)[2]}
            rec.update(nan_case(src, td, in_offsets))
            write_json(out_dir, "nan_input", rec)
        if not args.no_merge:
            rec = {"generator": "scripts/reference/quantize_golden.py",
                   "llama_cpp_python": L.__version__, "input": input_of(F32_NAME)[2]}
            rec.update(merge_case(src, td))
            write_json(out_dir, "merge_lora", rec)
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
