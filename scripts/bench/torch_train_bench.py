#!/usr/bin/env python3
"""PyTorch side of scripts/bench/vs-pytorch.sh: tokens/s of one training step of SmolLM2-135M.

transformers LlamaForCausalLM (attention "sdpa" by default), fp32 on the CPU, full fine-tuning or
PEFT LoRA on the seven linear modules; the step, the token batch, the FLOP count and the JSON
line are those of `anvil train-bench` (cli/cmd_train_bench.cc). The anvil side is not run here.

Usage: torch_train_bench.py [--gguf MODEL.gguf] --method lora|full [--seq 256 --batch 4
  --threads 2 --steps 5 --warmup 1 --rank 8 --alpha 16 --attn sdpa|eager --optimizer fused|...]
--gguf: the config is checked against its metadata; when every tensor is F32/F16 the real
weights are loaded (Q/K rows un-permuted, notes §2.4), so loss_first matches anvil's.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

# SmolLM2-135M, written out because this machine has no hub access; checked against --gguf.
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                    max_position_embeddings=8192)
GGUF_KEYS = dict(hidden_size="llama.embedding_length", intermediate_size="llama.feed_forward_length",
                 num_hidden_layers="llama.block_count", num_attention_heads="llama.attention.head_count",
                 num_key_value_heads="llama.attention.head_count_kv", rope_theta="llama.rope.freq_base",
                 rms_norm_eps="llama.attention.layer_norm_rms_epsilon",
                 max_position_embeddings="llama.context_length")
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOKEN_SEED = 1234  # as kTokenSeed in cli/cmd_train_bench.cc
LR, MAX_GRAD_NORM = 1e-4, 1.0
M64 = (1 << 64) - 1


def hash_counter(key, index):
    """splitmix64 of (key, index): anvil's HashCounter (model/trainable_llama.h)."""
    z = (key + 0x9E3779B97F4A7C15 * (index + 1)) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def make_batch(batch, seq, vocab):
    """[B][T] ids, HashCounter(1234, b*T + t) mod V: the very batch anvil trains on."""
    ids = [hash_counter(TOKEN_SEED, i) % vocab for i in range(batch * seq)]
    return torch.tensor(ids, dtype=torch.long).view(batch, seq)


def read_gguf(path):
    """-> (config overrides from metadata, GGUFReader, tied)."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    if r.fields["general.architecture"].contents() != "llama":
        sys.exit(f"error: {path}: not a llama GGUF")
    meta = {k: r.fields[key].contents() for k, key in GGUF_KEYS.items() if key in r.fields}
    names = {t.name: t for t in r.tensors}
    meta["vocab_size"] = int(names["token_embd.weight"].shape[1])  # ne = [C, V]
    meta["tie_word_embeddings"] = "output.weight" not in names
    return meta, r


def check_config(meta, path):
    for k, want in SMOLLM2_135M.items():
        have = meta.get(k)
        ok = have is not None and (abs(float(have) - want) <= 1e-6 * abs(want) + 1e-9
                                   if isinstance(want, float) else have == want)
        if not ok:
            sys.exit(f"error: {path}: {k} = {have}, the hand-written SmolLM2-135M config says {want}")


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, layer, rest = gguf_name.split(".", 2)
    table = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
             "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
             "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
             "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
             "ffn_down.weight": "mlp.down_proj.weight"}
    return f"model.layers.{layer}.{table[rest]}"


def load_gguf_weights(model, reader, cfg):
    """Copies F32/F16 GGUF tensors into the HF model; False (random init kept) otherwise."""
    from gguf import GGMLQuantizationType as Q
    if any(t.tensor_type not in (Q.F32, Q.F16) for t in reader.tensors):
        return False
    d = cfg.hidden_size // cfg.num_attention_heads
    params = dict(model.named_parameters())
    with torch.no_grad():
        for t in reader.tensors:
            a = np.array(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape.tolist())])
            if t.name.endswith(("attn_q.weight", "attn_k.weight")):
                # GGUF row h*d + 2i + j is HF row h*d + j*d/2 + i (notes §2.4): undo it.
                heads = a.shape[0] // d
                a = a.reshape(heads, d // 2, 2, a.shape[1]).swapaxes(1, 2).reshape(a.shape)
            params[hf_name(t.name)].copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return True


def step_flops(cfg, method, batch, seq, rank):
    """Model FLOPs of one step, counted exactly as CountStepFlops in cli/cmd_train_bench.cc."""
    n, t = batch * seq, seq
    C, F, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    D = C // cfg.num_attention_heads
    QD, KD = cfg.num_attention_heads * D, cfg.num_key_value_heads * D
    matmul_fwd = 2 * n * (L * (C * QD + 2 * C * KD + QD * C + 3 * C * F) + cfg.vocab_size * C)
    attn_fwd = L * batch * 2 * 2 * D * cfg.num_attention_heads * t * (t + 1) / 2  # causal half
    if method == "full":
        return 3 * matmul_fwd + 3 * attn_fwd
    in_out = (C + QD) * 2 + (C + KD) * 2 + 3 * (C + F)
    return 2 * matmul_fwd + 3 * attn_fwd + 3 * 2 * n * rank * in_out * L


def mm_peak(n, c, f, calls=8):
    """Best GFLOP/s of torch.mm on the step's main shapes (as anvil's MeasureSgemmPeak)."""
    best = 0.0
    for m_, n_, k_, trans_a in ((n, f, c, False), (n, c, f, False), (f, c, n, True)):
        a = torch.full((k_, m_) if trans_a else (m_, k_), 0.5)
        b = torch.full((n_, k_), 0.25)
        for i in range(calls + 1):
            t0 = time.perf_counter()
            torch.mm(a.t() if trans_a else a, b.t())
            sec = time.perf_counter() - t0
            if i > 0:
                best = max(best, 2.0 * m_ * n_ * k_ / sec / 1e9)
    return best


def make_optimizer(params, impl):
    kw = dict(lr=LR, weight_decay=0.0)
    if impl == "fused":
        try:
            return torch.optim.AdamW(params, fused=True, **kw), "fused"
        except (RuntimeError, TypeError):
            impl = "foreach"
    if impl == "foreach":
        return torch.optim.AdamW(params, foreach=True, **kw), "foreach"
    return torch.optim.AdamW(params, **kw), "default"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="SmolLM2-135M GGUF: metadata check, and weights when F32/F16")
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--optimizer", choices=["fused", "foreach", "default"], default="fused")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    meta, reader = read_gguf(args.gguf) if args.gguf else (None, None)
    if meta is not None:
        check_config(meta, args.gguf)
    cfg = LlamaConfig(**SMOLLM2_135M, hidden_act="silu", attention_bias=False, mlp_bias=False,
                      attention_dropout=0.0, torch_dtype="float32", attn_implementation=args.attn)
    model = LlamaForCausalLM(cfg).float()
    attn = model.config._attn_implementation
    if attn != args.attn:
        sys.exit(f"error: transformers chose attention {attn!r}, asked for {args.attn!r}")
    weights = "gguf" if reader is not None and load_gguf_weights(model, reader, cfg) else "random"
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
                                                 target_modules=LORA_MODULES, bias="none",
                                                 task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt, opt_impl = make_optimizer(params, args.optimizer)
    ids = make_batch(args.batch, args.seq, cfg.vocab_size)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss  # HF shifts: targets = next token
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        return loss.item()

    seconds, losses = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        if i >= args.warmup:
            seconds.append(time.perf_counter() - t0)
    peak = mm_peak(args.batch * args.seq, cfg.hidden_size, cfg.intermediate_size)
    step_s = statistics.median(seconds)
    gflop = step_flops(cfg, args.method, args.batch, args.seq, args.rank) / 1e9
    tok_s = args.batch * args.seq / step_s
    mfu = gflop / step_s / peak
    n_train = sum(p.numel() for p in params)
    print(f"torch train bench: {args.method}, {args.batch} x {args.seq} tokens, {args.threads} threads, "
          f"attention {attn}, AdamW {opt_impl}, weights {weights}: median step {step_s:.3f} s over "
          f"{args.steps} steps, {tok_s:.1f} tokens/s; loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
          f"{gflop:.1f} GFLOP/step, torch.mm peak {peak:.1f} GFLOP/s, MFU {mfu:.3f}; "
          f"{n_train} trainable params", file=sys.stderr)
    print(json.dumps(dict(engine="pytorch", method=args.method, seq=args.seq, batch=args.batch,
                          threads=args.threads, steps=args.steps, step_s_median=round(step_s, 4),
                          tokens_per_s=round(tok_s, 2), loss_first=round(losses[0], 6),
                          gflop_per_step=round(gflop, 2), gemm="torch.mm",
                          gemm_peak_gflops=round(peak, 1),
                          mfu=round(mfu, 4), attn=attn, optimizer=opt_impl, weights=weights,
                          trainable_params=n_train, torch=torch.__version__,
                          transformers=transformers.__version__)), flush=True)


if __name__ == "__main__":
    main()
