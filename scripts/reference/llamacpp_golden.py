#!/usr/bin/env python3
"""llama.cpp oracle: writes the golden fixtures in tests/fixtures/ (see docs: DESIGN.md "Oracles").

Runs llama.cpp (through llama-cpp-python's low-level ctypes API) on SmolLM2-135M-Instruct and
records tokenization, logits, greedy continuations, perplexity and per-position argmax, so the
C++ test suite can compare against an implementation nobody here wrote.

All evaluations use: flash attention OFF, KV cache F32 (K and V), n_threads 2, n_batch = n_ubatch
>= 512 (a 512-token chunk is one batch). Fixtures are regenerated only by this script.

Usage (normally through llamacpp_golden.sh, which sets up the venv):
  llamacpp_golden.py [--only tokenizer,logits,copies,perplexity,top1,tiny] [--tiny-tool PATH]
  llamacpp_golden.py --make-f32-only
  llamacpp_golden.py --make-copies      (F32, Q8_0, F16 copies for benchmarks)
"""

import argparse
import ctypes
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import llama_cpp as L

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
Q4_1_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
F32_NAME = "SmolLM2-135M-Instruct.F32.gguf"
Q8_0_NAME = "SmolLM2-135M-Instruct.Q8_0.gguf"
F16_NAME = "SmolLM2-135M-Instruct.F16.gguf"
GPL3 = Path("/usr/share/common-licenses/GPL-3")
THREADS = 2
SEED = 1234  # recorded; no sampler is used (greedy = argmax, ties -> lowest id)
ALL_PARTS = ["tokenizer", "logits", "copies", "perplexity", "top1", "tiny"]

SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def model_dir() -> Path:
    d = os.environ.get("ANVIL_MODELS")
    return Path(d) if d else Path.home() / ".cache" / "anvil" / "models"


# ---------------------------------------------------------------------------------------------
# logging: llama.cpp's log goes into a buffer; printed on failure or with --verbose

_LOG: list = []
_VERBOSE = False


@L.llama_log_callback
def _log_cb(level, text, user_data):  # noqa: ARG001
    s = text.decode("utf-8", "replace") if text else ""
    _LOG.append(s)
    if _VERBOSE:
        sys.stderr.write(s)


def log_tail(n_chars=4000) -> str:
    return "".join(_LOG)[-n_chars:]


def init_llama(verbose: bool):
    global _VERBOSE
    _VERBOSE = verbose
    L.llama_log_set(_log_cb, None)
    L.llama_backend_init()


def f32(x) -> float:
    """Shortest decimal that round-trips the float32 value."""
    return float(str(np.float32(x)))


def sig6(x) -> float:
    return float(f"{float(x):.6g}")


# ---------------------------------------------------------------------------------------------
# a thin engine over the low-level API


def parse_ctx_log(log: str):
    """(K type, V type) and the flash-attention state as llama.cpp's context log reports them."""
    kv = re.search(r"K \((\w+)\):.*V \((\w+)\):", log)
    fa = None
    m = re.search(r"Flash Attention (enabled|disabled)", log)  # the resolved 'auto'
    if m:
        fa = m.group(1)
    else:
        m = re.search(r"flash_attn\s*=\s*(\w+)", log)
        fa = m.group(1) if m else None
    return (kv.groups() if kv else None), fa


class LoadError(RuntimeError):
    pass


class Engine:
    def __init__(self, path: Path, n_ctx=512, n_batch=512, threads=THREADS, kv_f32=True,
                 flash_attn=False, n_outputs_max_per_seq=0, extra_bufts=False):
        self.path = Path(path)
        _LOG.clear()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        # Extra buffer types (CPU "repack" and AMX weight layouts) are off: with them on,
        # llama.cpp 0.3.36 segfaults in llama_decode on this Q4_1 model on AMX-capable CPUs, and
        # they make the arithmetic depend on the host CPU. Off = the plain ggml CPU kernels.
        mp.use_extra_bufts = extra_bufts
        self.extra_bufts = extra_bufts
        self.model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self.model:
            raise LoadError(f"llama.cpp failed to load {self.path}:\n{log_tail()}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.n_outputs_max_per_seq = n_outputs_max_per_seq
        if flash_attn is not None:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if kv_f32:
            cp.type_k = L.GGML_TYPE_F32
            cp.type_v = L.GGML_TYPE_F32
        self.cparams = cp
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            L.llama_model_free(self.model)
            raise LoadError(f"llama.cpp failed to create a context for {self.path}:\n{log_tail()}")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.load_log = "".join(_LOG)
        self.kv_types, self.flash_attn = parse_ctx_log(self.load_log)
        if kv_f32 and self.kv_types not in (None, ("f32", "f32")):
            raise RuntimeError(f"asked for an F32 KV cache, llama.cpp reports {self.kv_types}")
        if flash_attn is False and self.flash_attn not in (None, "disabled"):
            raise RuntimeError(f"asked for flash attention off, llama.cpp reports {self.flash_attn}")

    def settings(self) -> dict:
        cp = self.cparams
        return {
            "n_ctx": cp.n_ctx, "n_batch": cp.n_batch, "n_ubatch": cp.n_ubatch,
            "n_threads": cp.n_threads, "n_threads_batch": cp.n_threads_batch,
            "flash_attn_type": cp.flash_attn_type, "type_k": cp.type_k, "type_v": cp.type_v,
            "n_gpu_layers": 0, "use_extra_bufts": self.extra_bufts,
        }

    def close(self):
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list:
        b = text.encode("utf-8")
        cap = len(b) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, b, len(b), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, b, len(b), buf, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return [int(buf[i]) for i in range(n)]

    def clear(self):
        L.llama_memory_clear(self.mem, True)

    def logits_last(self) -> np.ndarray:
        """Logits of the last output of the previous decode call."""
        p = L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()

    def decode(self, tokens, pos0=0, want=None, timed=False):
        """Evaluate tokens at positions pos0.. in one batch (seq 0).

        want: positions within this batch whose logits are wanted (default: the last one).
        Returns an array [len(want), n_vocab] (float32) in want order; or seconds if timed.
        """
        n = len(tokens)
        assert 0 < n <= self.n_batch
        if want is None:
            want = [n - 1]
        wset = set(want)
        b = self.batch
        b.n_tokens = n
        for i, t in enumerate(tokens):
            b.token[i] = int(t)
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if i in wset else 0
        t0 = time.perf_counter()
        rc = L.llama_decode(self.ctx, b)
        L.llama_synchronize(self.ctx)
        dt = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}:\n{log_tail()}")
        if timed:
            return dt
        out = np.empty((len(want), self.n_vocab), dtype=np.float32)
        for k, i in enumerate(want):
            p = L.llama_get_logits_ith(self.ctx, i)
            out[k] = np.ctypeslib.as_array(p, shape=(self.n_vocab,))
        return out


def argmax_lowest(z: np.ndarray) -> int:
    return int(np.argmax(z))  # numpy returns the first (lowest id) maximum


def topk(z: np.ndarray, k: int):
    idx = np.argsort(-z.astype(np.float64), kind="stable")[:k]  # ties keep lowest id first
    return [[int(i), f32(z[i])] for i in idx]


def greedy(eng: Engine, prompt_ids, n_new, first_logits=None):
    """Greedy continuation from a prompt already evaluated (first_logits = logits at its last
    position). Always n_new tokens, no EOS stop."""
    out = []
    z = first_logits
    pos = len(prompt_ids)
    for _ in range(n_new):
        t = argmax_lowest(z)
        out.append(t)
        z = eng.decode([t], pos0=pos)[0]
        pos += 1
    return out


def write_json(name: str, obj, indent=None):
    FIXTURES.mkdir(parents=True, exist_ok=True)
    p = FIXTURES / name
    with open(p, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
        f.write("\n")
    print(f"  wrote {p.relative_to(REPO)} ({p.stat().st_size} bytes)")


def common_meta(model_file: str, eng: Engine = None) -> dict:
    m = {
        "generator": "scripts/reference/llamacpp_golden.py",
        "llama_cpp_python": L.__version__,
        "model": model_file,
        "seed": SEED,
    }
    if eng is not None:
        m["settings"] = eng.settings()
        m["settings"]["flash_attn"] = "disabled"
        m["settings"]["kv_cache_type"] = "f32"
    return m


# ---------------------------------------------------------------------------------------------
# GGUF tensor-type listing (used to verify the F32 copy is really F32)


def gguf_tensor_types(path: Path) -> dict:
    with open(path, "rb") as f:
        def rd(fmt):
            s = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(s))

        def rstr():
            (n,) = rd("Q")
            return f.read(n).decode("utf-8", "replace")

        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def skip_val(t):
            if t == 8:
                rstr()
            elif t == 9:
                et, n = rd("IQ")
                if et == 8:
                    for _ in range(n):
                        rstr()
                elif et == 9:
                    for _ in range(n):
                        skip_val(9)
                else:
                    f.seek(sizes[et] * n, 1)
            else:
                f.seek(sizes[t], 1)

        magic = f.read(4)
        assert magic == b"GGUF", magic
        (ver,) = rd("I")
        n_t, n_kv = rd("QQ")
        for _ in range(n_kv):
            rstr()
            (t,) = rd("I")
            skip_val(t)
        types = {}
        for _ in range(n_t):
            name = rstr()
            (nd,) = rd("I")
            rd("Q" * nd)
            (tt,) = rd("I")
            rd("Q")
            types[name] = tt
        return types


GGML_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0",
                   9: "q8_1", 10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k", 30: "bf16"}


def type_counts(path: Path) -> dict:
    c = {}
    for t in gguf_tensor_types(path).values():
        k = GGML_TYPE_NAMES.get(t, str(t))
        c[k] = c.get(k, 0) + 1
    return dict(sorted(c.items()))


# ---------------------------------------------------------------------------------------------
# a) F32 copy


# Copies of the model in other weight types, each made with llama.cpp's own quantize API:
# name -> (llama_ftype attribute, source copy, GGML types every tensor must have).
COPIES = {
    F32_NAME: ("LLAMA_FTYPE_ALL_F32", Q4_1_NAME, {0}),
    Q8_0_NAME: ("LLAMA_FTYPE_MOSTLY_Q8_0", F32_NAME, {0, 8}),
    F16_NAME: ("LLAMA_FTYPE_MOSTLY_F16", F32_NAME, {0, 1}),
}


def ensure_copy(mdir: Path, name: str) -> Path:
    ftype_attr, src_name, allowed = COPIES[name]
    src = mdir / src_name
    dst = mdir / name
    if dst.exists():
        print(f"{name} present: {dst}")
        return dst
    if src_name != Q4_1_NAME:
        ensure_copy(mdir, src_name)
    if not src.exists():
        sys.exit(f"error: {src} not found (run scripts/fetch-model.sh)")
    t0 = time.time()
    tmp = dst.with_suffix(".gguf.tmp")
    qp = L.llama_model_quantize_default_params()
    qp.nthread = THREADS
    qp.ftype = getattr(L, ftype_attr)
    qp.allow_requantize = True
    _LOG.clear()
    try:
        rc = L.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(qp))
        if rc != 0:
            sys.stderr.write(log_tail())
            sys.exit(f"error: llama_model_quantize to {name} failed (rc={rc})")
        types = gguf_tensor_types(tmp)
        bad = {k: v for k, v in types.items() if v not in allowed}
        if bad:
            sys.exit(f"error: {name} has tensors of unexpected types: {bad}")
        try:
            Engine(tmp, n_ctx=64, n_batch=64).close()
        except LoadError as e:
            sys.exit(f"error: {name} does not load: {e}")
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"made {dst} ({dst.stat().st_size} bytes, {type_counts(dst)}, "
          f"{time.time() - t0:.1f}s)")
    return dst


def ensure_f32(mdir: Path) -> Path:
    return ensure_copy(mdir, F32_NAME)


# ---------------------------------------------------------------------------------------------
# b) tokenizer


def tokenizer_cases():
    long_text = (
        "The GNU General Public License is a free, copyleft license for software and other kinds "
        "of works. In 2024, roughly 1,234,567 projects used it; version 3.0 was published on "
        "29 June 2007. Ça marche très bien — n'est-ce pas? Numbers: 0 1 22 333 4444 55555.\n\t"
        "def f(x):\n    return x ** 2  # square\n"
    )
    long_text = (long_text * 8)[:2000]
    S = [  # (text, add_special, parse_special)
        ("Hello world", True, True),
        ("The quick brown fox jumps over the lazy dog.", True, True),
        ("I am a small language model running on a CPU.", True, True),
        (" leading space", True, True),
        ("trailing space ", True, True),
        ("  two leading and two trailing  ", True, True),
        ("12345", True, True),
        ("3.14159", True, True),
        (" 2024 ", True, True),
        ("1,000,000", True, True),
        ("a  b", True, True),
        ("   ", True, True),
        ("\n\n", True, True),
        ("\t\tx", True, True),
        ("line1\nline2\r\n", True, True),
        ("def add(a, b):\n    # sum\n    return a + b\n\n\nprint(add(1, 2))\n", True, True),
        ("int main(void) {\n\tfor (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }\n\treturn 0;\n}\n", True, True),
        ("don't I'll we've they're she's he'd I'm", True, True),
        ("DON'T I'LL WE'VE", True, True),
        ("!!!???", True, True),
        ("...", True, True),
        ("Wait... what?! (really) [yes] {no} <maybe>", True, True),
        ("café naïve résumé", True, True),
        ("Grüße aus München, die Straße ist schön.", True, True),
        ("Où est la bibliothèque ? C'est à côté de l'école.", True, True),
        ("¿Dónde está el baño? ¡Muchas gracias, señor!", True, True),
        ("你好，世界", True, True),
        ("こんにちは、カタカナとひらがな。", True, True),
        ("안녕하세요 세계", True, True),
        ("😀👍🏽", True, True),
        ("family: 👨‍👩‍👧‍👦!", True, True),
        ("مرحبا بالعالم", True, True),
        ("שלום עולם", True, True),
        ("Mixed: English, Русский, 日本語, 한국어, العربية 123", True, True),
        ("<|im_start|>user\nhi<|im_end|>", True, True),
        ("<|im_start|>user\nhi<|im_end|>", True, False),
        ("<|endoftext|>", True, True),
        ("<|endoftext|>", True, False),
        ("", True, True),
        ("", False, False),
        ("Hello world", False, False),
        ("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n"
         "What is 2+2?<|im_end|>\n<|im_start|>assistant\n", True, True),
        ("text<file_sep>more<jupyter_code>x=1", True, True),
        ("text<file_sep>more<jupyter_code>x=1", True, False),
        ("tab\there\u00a0nbsp\u3000ideographic space", True, True),
        ("x\u00ad soft\u200bhyphen zero-width", True, True),
        (long_text, True, True),
    ]
    return S


def part_tokenizer(mdir: Path):
    with Engine(mdir / Q4_1_NAME, n_ctx=64, n_batch=64) as eng:
        add_bos = bool(L.llama_vocab_get_add_bos(eng.vocab))
        cases = []
        for text, asp, psp in tokenizer_cases():
            ids = eng.tokenize(text, asp, psp)
            cases.append({"text": text, "add_special": asp, "parse_special": psp, "ids": ids})
        meta = common_meta(Q4_1_NAME)
        meta["add_bos"] = add_bos
        meta["n_vocab"] = eng.n_vocab
        meta["cases"] = cases
    write_json("tokenizer.json", meta, indent=1)


# ---------------------------------------------------------------------------------------------
# c) logits + greedy


def prompts():
    chat = (
        "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
        "<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    paragraph = (
        "The history of computing is a story of steadily shrinking machines and steadily growing "
        "ambitions. Early electronic computers filled entire rooms, consumed enormous amounts of "
        "power and could perform only a few thousand operations per second. Transistors replaced "
        "vacuum tubes, integrated circuits replaced discrete transistors, and microprocessors put "
        "a whole computer on a single chip. Today a phone in your pocket is millions of times "
        "faster than those first machines, and"
    )
    return [
        ("plain", "The capital of France is"),
        ("chat", chat),
        ("code", "def fibonacci(n):"),
        ("list", "Here is a list of the first ten prime numbers: 2, 3, 5, 7,"),
        ("paragraph", paragraph),
    ]


FIXED_IDS = list(range(10))


def part_logits(mdir: Path, model_file: str, out_name: str):
    with Engine(mdir / model_file, n_ctx=512, n_batch=512) as eng:
        res = []
        for name, text in prompts():
            ids = eng.tokenize(text, True, True)
            eng.clear()
            z = eng.decode(ids, 0)[0]
            top = topk(z, 10)
            sel = sorted(set(FIXED_IDS) | {t for t, _ in top})
            cont = greedy(eng, ids, 32, z)
            res.append({
                "name": name, "text": text, "prompt_ids": ids,
                "top10": top,
                "logits_at": {str(i): f32(z[i]) for i in sel},
                "greedy32": cont,
            })
            print(f"    {model_file} {name}: {len(ids)} prompt tokens, top1 {top[0]}")
        meta = common_meta(model_file, eng)
        meta["n_vocab"] = eng.n_vocab
        meta["tensor_type_counts"] = type_counts(mdir / model_file)
        meta["tokenize"] = {"add_special": True, "parse_special": True}
        meta["greedy"] = "argmax per step (ties -> lowest id), 32 tokens, no EOS stop, fresh KV per prompt"
        meta["logits_note"] = "logits at the last prompt position; top10 sorted by logit desc"
        meta["prompts"] = res
    write_json(out_name, meta, indent=1)


# ---------------------------------------------------------------------------------------------
# d) perplexity + e) top1


def gpl3_tokens(eng: Engine):
    text = GPL3.read_text(encoding="utf-8")
    return eng.tokenize(text, True, False)


def nll_of(z: np.ndarray, y: int) -> float:
    z = z.astype(np.float32, copy=False)
    m = z.max()
    s = float(np.exp(z - m, dtype=np.float32).astype(np.float64).sum())
    return -(float(np.float32(z[y] - m)) - math.log(s))


def part_perplexity(mdir: Path, n_ctx=512, n_chunks=4):
    out = None
    models = {}
    for mf in (F32_NAME, Q4_1_NAME):
        t0 = time.time()
        with Engine(mdir / mf, n_ctx=n_ctx, n_batch=n_ctx) as eng:
            toks = gpl3_tokens(eng)
            assert len(toks) >= 2 * n_ctx
            nc = min(n_chunks, len(toks) // n_ctx)
            first = n_ctx // 2
            tot, cnt, running = 0.0, 0, []
            for c in range(nc):
                chunk = toks[c * n_ctx:(c + 1) * n_ctx]
                eng.clear()
                want = list(range(first, n_ctx))
                Z = eng.decode(chunk, 0, want)
                for k, j in enumerate(want[:-1]):  # j = first .. n_ctx-2
                    tot += nll_of(Z[k], chunk[j + 1])
                    cnt += 1
                running.append(round(math.exp(tot / cnt), 6))
            models[mf] = {"ppl": math.exp(tot / cnt), "running_ppl": running,
                          "mean_nll": tot / cnt, "count": cnt}
            if out is None:
                out = common_meta(None, eng)
                del out["model"]
                out.update({"text_file": str(GPL3), "n_tokens": len(toks), "ctx": n_ctx,
                            "chunks": nc, "first_scored": first,
                            "tokenize": {"add_special": True, "parse_special": False},
                            "first_16_ids": toks[:16]})
            print(f"    {mf}: PPL {models[mf]['ppl']:.4f} running {running} ({time.time() - t0:.1f}s)")
    out["method"] = ("llama-perplexity: per chunk clear KV, one batch of ctx tokens, score positions "
                     "ctx/2..ctx-2 predicting the next token; nll with float32 exp, float64 sum")
    out["models"] = models
    write_json("perplexity.json", out, indent=1)


def part_top1(mdir: Path, n_ctx=512, n_chunks=4):
    with Engine(mdir / Q4_1_NAME, n_ctx=n_ctx, n_batch=n_ctx) as eng:
        toks = gpl3_tokens(eng)[: n_ctx * n_chunks]
        top1, margin = [], []
        for c in range(n_chunks):
            chunk = toks[c * n_ctx:(c + 1) * n_ctx]
            eng.clear()
            Z = eng.decode(chunk, 0, list(range(n_ctx)))
            for z in Z:
                i1 = argmax_lowest(z)
                z2 = z.copy()
                z2[i1] = -np.inf
                top1.append(i1)
                margin.append(round(float(z[i1]) - float(z2.max()), 4))
        meta = common_meta(Q4_1_NAME, eng)
        meta.update({"text_file": str(GPL3), "ctx": n_ctx, "chunks": n_chunks,
                     "note": "top1[i] = argmax of logits at position i of its chunk (ties -> lowest id); "
                             "margin = logit1 - logit2",
                     "tokens": toks, "top1": top1, "margin": margin})
    write_json("top1_q4_1.json", meta)


# ---------------------------------------------------------------------------------------------
# f) tiny model written by our own GGUF writer


TINY_SEQS = [
    [7],
    [1, 17, 42, 99, 3, 200, 5],
    [(i * 37 + 11) % 256 for i in range(24)],
]


def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def part_tiny(tool: str, seed: int):
    if not tool or not Path(tool).exists():
        sys.exit(f"error: --tiny-tool {tool!r} not found")
    out = {"generator": "scripts/reference/llamacpp_golden.py", "llama_cpp_python": L.__version__,
           "tool": "anvil_make_tiny_model", "seed": seed, "variants": {}}
    failed = False
    with tempfile.TemporaryDirectory() as td:
        for variant, flags in (("mixed", []), ("f32", ["--f32"]), ("untied", ["--untied"])):
            path = Path(td) / f"tiny_{variant}.gguf"
            cmd = [tool, str(path), *flags, "--seed", str(seed)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
            try:
                eng = Engine(path, n_ctx=64, n_batch=64)
            except LoadError as e:
                print(f"error: llama.cpp could not load the tiny {variant} model:\n{e}", file=sys.stderr)
                failed = True
                continue
            with eng:
                if eng.n_vocab > 4096:
                    sys.exit(f"error: tiny model has n_vocab {eng.n_vocab}; full logits would be too big")
                seqs = []
                for ids in TINY_SEQS:
                    assert max(ids) < eng.n_vocab
                    eng.clear()
                    Z = eng.decode(ids, 0, list(range(len(ids))))
                    cont = greedy(eng, ids, 16, Z[-1])
                    seqs.append({"ids": ids,
                                 "logits": [[sig6(v) for v in z] for z in Z],
                                 "greedy16": cont})
                st = eng.settings()
                st.update({"flash_attn": "disabled", "kv_cache_type": "f32"})
                out["variants"][variant] = {
                    "args": flags + ["--seed", str(seed)], "sha256": sha256(path),
                    "size": path.stat().st_size, "n_vocab": eng.n_vocab,
                    "tensor_type_counts": type_counts(path),
                    "settings": st, "sequences": seqs,
                }
                print(f"    tiny {variant}: n_vocab {eng.n_vocab}, greedy {[s['greedy16'][:6] for s in seqs]}")
    if failed:
        sys.exit(1)
    write_json("tiny_model.json", out)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="comma list of " + ",".join(ALL_PARTS))
    ap.add_argument("--make-f32-only", action="store_true")
    ap.add_argument("--make-copies", action="store_true",
                    help="make the F32, Q8_0 and F16 copies (for benchmarks) and stop")
    ap.add_argument("--tiny-tool", default=None, help="path of anvil_make_tiny_model")
    ap.add_argument("--tiny-seed", type=int, default=42)
    ap.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    a = ap.parse_args()
    init_llama(a.verbose)
    mdir = model_dir()
    if a.make_f32_only:
        ensure_f32(mdir)
        return
    if a.make_copies:
        for name in COPIES:
            ensure_copy(mdir, name)
        return
    if a.only:
        parts = [p.strip() for p in a.only.split(",") if p.strip()]
        bad = [p for p in parts if p not in ALL_PARTS]
        if bad:
            ap.error(f"unknown part(s) {bad}")
    else:
        parts = [p for p in ALL_PARTS if p != "tiny" or a.tiny_tool]
    if any(p in parts for p in ("tokenizer", "logits", "perplexity", "top1")):
        if not (mdir / Q4_1_NAME).exists():
            sys.exit(f"error: {mdir / Q4_1_NAME} not found (run scripts/fetch-model.sh)")
    if any(p in parts for p in ("logits", "perplexity")):
        ensure_f32(mdir)
    for p in parts:
        t0 = time.time()
        print(f"[{p}]")
        if p == "tokenizer":
            part_tokenizer(mdir)
        elif p == "logits":
            part_logits(mdir, F32_NAME, "llamacpp_f32.json")
            part_logits(mdir, Q4_1_NAME, "llamacpp_q4_1.json")
        elif p == "copies":
            for name, fixture in ((Q8_0_NAME, "llamacpp_q8_0.json"), (F16_NAME, "llamacpp_f16.json")):
                ensure_copy(mdir, name)
                part_logits(mdir, name, fixture)
        elif p == "perplexity":
            part_perplexity(mdir)
        elif p == "top1":
            part_top1(mdir)
        elif p == "tiny":
            part_tiny(a.tiny_tool, a.tiny_seed)
        print(f"[{p}] done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
