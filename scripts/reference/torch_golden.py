#!/usr/bin/env python3
"""PyTorch oracle for the training engine: writes tests/fixtures/train/ (DESIGN.md "Oracles").

On the deterministic tiny llama (anvil_make_tiny_model --f32, tied and --untied), this script
re-implements the forward pass of model/llama_model.cc in float32 torch (RMSNorm, RoPE NORM mode on
the weights as stored in GGUF, causal GQA attention with scale 1/sqrt(D), SwiGLU, tied or separate
lm_head) and records, through autograd:

  * SFT:   logits, the masked mean cross-entropy (HF semantics) and the gradient of every parameter;
  * LoRA:  rank 4, alpha 8 on the seven matrices of every layer (base frozen): loss, logits, grads;
  * AdamW: five full fine-tuning steps (torch.optim.AdamW, two param groups, clip_grad_norm_ 1.0);
  * DPO:   TRL's sigmoid loss (beta 0.1), policy = base + LoRA, reference = base: loss, log-probs,
           rewards, LoRA grads.

Files: tests/fixtures/train/torch_tied.safetensors, torch_untied.safetensors (F32 tensors, I32
tokens; names documented in torch_golden.json) and torch_golden.json (config and scalars).

Before writing, it runs self-tests: the tied model's logits against llama.cpp's logits for the same
GGUF (tests/fixtures/tiny_model.json, when its sha256 matches), torch.autograd.gradcheck in float64
of the SFT / LoRA / DPO losses on a smaller random model, the RoPE against a complex-number
formulation, AdamW against the closed form of the notes (section 5.3) and, when transformers and
peft are importable, the logits/loss/gradients against HF LlamaForCausalLM + PEFT LoRA.

Usage (normally through torch_golden.sh, which sets up the venv and builds the tool):
  torch_golden.py --tiny-tool PATH [--out-dir DIR] [--seed N] [--no-selftest] [--no-hf-check]
"""

import argparse
import hashlib
import importlib.metadata as md
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "tests" / "fixtures" / "train"
TINY_JSON = REPO / "tests" / "fixtures" / "tiny_model.json"

SEED = 1234          # numpy seed of the tokens and the LoRA init
TINY_SEED = 42       # anvil_make_tiny_model --seed
B, T = 2, 12         # SFT batch
SFT_MASK_PREFIX = (4, 6)  # targets of the first 4 (seq 0) / 6 (seq 1) positions are -100
IGNORE = -100
LORA_RANK, LORA_ALPHA = 4, 8.0
LORA_SCALE = LORA_ALPHA / LORA_RANK
LORA_B_STD = 0.05
LORA_MODULES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay_2d=0.01, weight_decay_1d=0.0,
             max_grad_norm=1.0, steps=5)
DPO_BETA = 0.1
DPO_PAIRS, DPO_PROMPT = 2, 5

VARIANTS = (("tied", ["--f32"]), ("untied", ["--f32", "--untied"]))


# ---------------------------------------------------------------------------------------------
# the model


class Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    def as_dict(self):
        return dict(self.__dict__, head_dim=self.head_dim)


def read_gguf(path: Path):
    """-> (Config, {gguf name: float32 tensor with shape = ne reversed}) of an all-F32 llama GGUF."""
    from gguf import GGUFReader, GGMLQuantizationType

    r = GGUFReader(str(path))

    def field(key):
        f = r.fields[key]
        if hasattr(f, "contents"):
            return f.contents()
        return f.parts[f.data[0]].tolist()[0]

    arch = field("general.architecture")
    if arch != "llama":
        sys.exit(f"error: {path}: architecture {arch!r}, expected llama")
    cfg = Config(
        n_vocab=None,
        n_embd=int(field("llama.embedding_length")),
        n_layer=int(field("llama.block_count")),
        n_head=int(field("llama.attention.head_count")),
        n_head_kv=int(field("llama.attention.head_count_kv")),
        n_ff=int(field("llama.feed_forward_length")),
        n_rot=int(field("llama.rope.dimension_count")),
        rope_freq_base=float(field("llama.rope.freq_base")),
        rms_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
    )
    params = {}
    for t in r.tensors:
        if t.tensor_type != GGMLQuantizationType.F32:
            sys.exit(f"error: {path}: tensor {t.name} is {t.tensor_type.name}; the oracle needs --f32")
        a = np.array(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape.tolist())])
        params[t.name] = torch.from_numpy(a.copy())
    cfg.n_vocab = params["token_embd.weight"].shape[0]
    cfg.tied = "output.weight" not in params
    return cfg, params


def param_names(cfg):
    names = ["token_embd.weight"]
    for l in range(cfg.n_layer):
        names += [f"blk.{l}.{n}.weight" for n in
                  ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                   "ffn_gate", "ffn_up", "ffn_down")]
    names.append("output_norm.weight")
    if not cfg.tied:
        names.append("output.weight")
    return names


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(n_pos, n_rot, base, dtype):
    """cos/sin [n_pos][n_rot/2] of theta = pos * base^(-2i/n_rot), evaluated in float64."""
    i = torch.arange(n_rot // 2, dtype=torch.float64)
    pos = torch.arange(n_pos, dtype=torch.float64)
    theta = pos[:, None] * torch.pow(torch.tensor(base, dtype=torch.float64), -2.0 * i / n_rot)[None, :]
    return torch.cos(theta).to(dtype), torch.sin(theta).to(dtype)


def rope_norm(x, cos, sin, n_rot):
    """llama.cpp NORM mode on x [B][T][H][D]: rotates adjacent pairs (2i, 2i+1) of the first n_rot dims."""
    xr, xp = x[..., :n_rot], x[..., n_rot:]
    pairs = xr.reshape(*xr.shape[:-1], n_rot // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).reshape(xr.shape)
    return torch.cat((out, xp), dim=-1) if xp.shape[-1] else out


def forward(cfg, P, tokens, lora=None, lora_scale=LORA_SCALE):
    """logits [B][T][V] of the llama forward pass (positions 0..T-1 per sequence).

    P: {gguf name: tensor}; lora: None or {"blk.l.module.weight": (A [r][in], B [out][r])}."""
    Bn, Tn = tokens.shape
    H, Hkv, D = cfg.n_head, cfg.n_head_kv, cfg.head_dim
    x = P["token_embd.weight"][tokens]
    dtype = x.dtype
    cos, sin = rope_cos_sin(Tn, cfg.n_rot, cfg.rope_freq_base, dtype)
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    scale = 1.0 / math.sqrt(D)

    def lin(name, h):
        y = h @ P[name].T
        if lora is not None and name in lora:
            a, b = lora[name]
            y = y + lora_scale * ((h @ a.T) @ b.T)
        return y

    for l in range(cfg.n_layer):
        p = f"blk.{l}."
        h = rms_norm(x, P[p + "attn_norm.weight"], cfg.rms_eps)
        q = lin(p + "attn_q.weight", h).reshape(Bn, Tn, H, D)
        k = lin(p + "attn_k.weight", h).reshape(Bn, Tn, Hkv, D)
        v = lin(p + "attn_v.weight", h).reshape(Bn, Tn, Hkv, D)
        q = rope_norm(q, cos, sin, cfg.n_rot).transpose(1, 2)            # [B][H][T][D]
        k = rope_norm(k, cos, sin, cfg.n_rot).transpose(1, 2)            # [B][Hkv][T][D]
        v = v.transpose(1, 2)
        k = k.repeat_interleave(H // Hkv, dim=1)  # query head h uses kv head h // (H/Hkv)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = (q @ k.transpose(-1, -2)) * scale
        s = s.masked_fill(~causal, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bn, Tn, H * D)
        x = x + lin(p + "attn_output.weight", o)
        h = rms_norm(x, P[p + "ffn_norm.weight"], cfg.rms_eps)
        m = F.silu(lin(p + "ffn_gate.weight", h)) * lin(p + "ffn_up.weight", h)
        x = x + lin(p + "ffn_down.weight", m)
    h = rms_norm(x, P["output_norm.weight"], cfg.rms_eps)
    E = P["token_embd.weight"] if cfg.tied else P["output.weight"]
    return h @ E.T


def sft_loss(logits, targets):
    """sum of per-token CE over targets != -100, / their number in the whole batch."""
    V = logits.shape[-1]
    n = (targets != IGNORE).sum()
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=IGNORE,
                         reduction="sum")
    return ce / n


def seq_logps(logits, targets):
    """per sequence: SUM over targets != -100 of log_softmax(logits)[target]."""
    lp = torch.log_softmax(logits, dim=-1)
    mask = targets != IGNORE
    safe = torch.where(mask, targets, torch.zeros_like(targets)).long()
    tok = lp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (tok * mask.to(lp.dtype)).sum(-1)


def dpo_terms(cfg, P, lora, chosen, rejected, chosen_t, rejected_t, beta=DPO_BETA):
    """TRL sigmoid DPO; batch layout [chosen..., rejected...] as DPOTrainer concatenates them."""
    n = chosen.shape[0]
    toks = torch.cat((chosen, rejected))
    tg = torch.cat((chosen_t, rejected_t))
    pol = seq_logps(forward(cfg, P, toks, lora), tg)
    with torch.no_grad():
        ref = seq_logps(forward(cfg, P, toks, None), tg)   # adapters disabled
    pc, pr, rc, rr = pol[:n], pol[n:], ref[:n], ref[n:]
    delta = (pc - rc) - (pr - rr)
    loss = (-F.logsigmoid(beta * delta)).mean()
    return loss, dict(pc=pc, pr=pr, rc=rc, rr=rr,
                      rewards_chosen=(beta * (pc - rc)).detach(),
                      rewards_rejected=(beta * (pr - rr)).detach())


# ---------------------------------------------------------------------------------------------
# inputs


def make_inputs(seed, cfg):
    rng = np.random.default_rng(seed)
    V = cfg.n_vocab
    # 1. SFT tokens and targets
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
    targets = np.full((B, T), IGNORE, dtype=np.int32)
    targets[:, :-1] = tokens[:, 1:]
    for b, k in enumerate(SFT_MASK_PREFIX):
        targets[b, :k] = IGNORE
    # 2. DPO pairs: shared 5-token prompt, different 7-token completions
    prompts = rng.integers(0, V, size=(DPO_PAIRS, DPO_PROMPT))
    comp_c = rng.integers(0, V, size=(DPO_PAIRS, T - DPO_PROMPT))
    comp_r = rng.integers(0, V, size=(DPO_PAIRS, T - DPO_PROMPT))
    for i in range(DPO_PAIRS):
        while comp_r[i, 0] == comp_c[i, 0]:
            comp_r[i, 0] = rng.integers(0, V)
    chosen = np.concatenate((prompts, comp_c), axis=1).astype(np.int32)
    rejected = np.concatenate((prompts, comp_r), axis=1).astype(np.int32)

    def dpo_targets(tk):
        tg = np.full_like(tk, IGNORE)
        tg[:, DPO_PROMPT - 1:-1] = tk[:, DPO_PROMPT:]
        return tg

    # 3. LoRA init (layer-major, modules in LORA_MODULES order, A then B)
    lora = {}
    for l in range(cfg.n_layer):
        for m in LORA_MODULES:
            name = f"blk.{l}.{m}.weight"
            n_out, n_in = lora_shape(cfg, m)
            bound = 1.0 / math.sqrt(n_in)
            a = rng.uniform(-bound, bound, size=(LORA_RANK, n_in)).astype(np.float32)
            bm = rng.normal(0.0, LORA_B_STD, size=(n_out, LORA_RANK)).astype(np.float32)
            lora[name] = (a, bm)
    return dict(tokens=tokens, targets=targets, chosen=chosen, rejected=rejected,
                chosen_t=dpo_targets(chosen), rejected_t=dpo_targets(rejected), lora=lora)


def lora_shape(cfg, module):
    """(n_out, n_in) of a layer matrix."""
    C, D = cfg.n_embd, cfg.head_dim
    return {"attn_q": (cfg.n_head * D, C), "attn_k": (cfg.n_head_kv * D, C),
            "attn_v": (cfg.n_head_kv * D, C), "attn_output": (C, cfg.n_head * D),
            "ffn_gate": (cfg.n_ff, C), "ffn_up": (cfg.n_ff, C), "ffn_down": (C, cfg.n_ff)}[module]


def lora_tensors(lora_np, dtype=torch.float32):
    return {k: (torch.tensor(a, dtype=dtype, requires_grad=True),
                torch.tensor(b, dtype=dtype, requires_grad=True)) for k, (a, b) in lora_np.items()}


# ---------------------------------------------------------------------------------------------
# the oracle runs


def f32(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float32).item()
    return float(np.float32(x))


def run_variant(cfg, P0, inp):
    out = {}
    scal = {}
    names = param_names(cfg)
    tokens = torch.from_numpy(inp["tokens"])
    targets = torch.from_numpy(inp["targets"])
    out["input.tokens"] = tokens
    out["input.targets"] = targets

    # --- SFT (full parameters)
    P = {n: P0[n].clone().requires_grad_(True) for n in names}
    logits = forward(cfg, P, tokens)
    loss = sft_loss(logits, targets)
    loss.backward()
    out["sft.logits"] = logits.detach()
    out["sft.loss"] = loss.detach().reshape(1)
    for n in names:
        out["grad." + n] = P[n].grad.detach()
    scal["sft_loss"] = f32(loss)
    scal["sft_n_targets"] = int((targets != IGNORE).sum())

    # --- LoRA SFT (base frozen)
    Pf = {n: P0[n].clone() for n in names}
    lora = lora_tensors(inp["lora"])
    for k, (a, b) in lora.items():
        out[f"lora.{k}.lora_a"] = a.detach().clone()
        out[f"lora.{k}.lora_b"] = b.detach().clone()
    logits = forward(cfg, Pf, tokens, lora)
    loss = sft_loss(logits, targets)
    loss.backward()
    out["lora_sft.logits"] = logits.detach()
    out["lora_sft.loss"] = loss.detach().reshape(1)
    for k, (a, b) in lora.items():
        out[f"lora_grad.{k}.lora_a"] = a.grad.detach()
        out[f"lora_grad.{k}.lora_b"] = b.grad.detach()
    scal["lora_sft_loss"] = f32(loss)

    # --- AdamW, 5 steps of full fine-tuning
    P = {n: P0[n].clone().requires_grad_(True) for n in names}
    decay = [P[n] for n in names if P[n].dim() >= 2]
    no_decay = [P[n] for n in names if P[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay_2d"]},
                             {"params": no_decay, "weight_decay": ADAMW["weight_decay_1d"]}],
                            lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    losses, norms = [], []
    for step in range(1, ADAMW["steps"] + 1):
        opt.zero_grad(set_to_none=True)
        loss = sft_loss(forward(cfg, P, tokens), targets)
        losses.append(loss.detach())
        loss.backward()
        if step == 1:
            for n in names:  # same batch, same params: the SFT gradients again
                assert torch.equal(P[n].grad, out["grad." + n]), n
        norms.append(torch.nn.utils.clip_grad_norm_([P[n] for n in names], ADAMW["max_grad_norm"]).detach())
        opt.step()
        for n in names:
            out[f"adamw.step{step}.{n}"] = P[n].detach().clone()
    with torch.no_grad():
        losses.append(sft_loss(forward(cfg, P, tokens), targets))
    out["adamw.loss"] = torch.stack(losses)
    out["adamw.grad_norm"] = torch.stack(norms).reshape(-1)
    scal["adamw_loss"] = [f32(v) for v in losses]
    scal["adamw_grad_norm"] = [f32(v) for v in norms]

    # --- DPO: policy = base + LoRA (same init), reference = base
    lora = lora_tensors(inp["lora"])
    ch, rj = torch.from_numpy(inp["chosen"]), torch.from_numpy(inp["rejected"])
    ch_t, rj_t = torch.from_numpy(inp["chosen_t"]), torch.from_numpy(inp["rejected_t"])
    out["dpo.chosen.tokens"], out["dpo.rejected.tokens"] = ch, rj
    out["dpo.chosen.targets"], out["dpo.rejected.targets"] = ch_t, rj_t
    loss, d = dpo_terms(cfg, Pf, lora, ch, rj, ch_t, rj_t)
    loss.backward()
    acc = (d["rewards_chosen"] > d["rewards_rejected"]).to(torch.float32).mean()
    margin = (d["rewards_chosen"] - d["rewards_rejected"]).mean()
    out["dpo.loss"] = loss.detach().reshape(1)
    out["dpo.policy_logps_chosen"] = d["pc"].detach()
    out["dpo.policy_logps_rejected"] = d["pr"].detach()
    out["dpo.ref_logps_chosen"] = d["rc"].detach()
    out["dpo.ref_logps_rejected"] = d["rr"].detach()
    out["dpo.rewards_chosen"] = d["rewards_chosen"]
    out["dpo.rewards_rejected"] = d["rewards_rejected"]
    out["dpo.reward_accuracy"] = acc.reshape(1)
    out["dpo.reward_margin"] = margin.reshape(1)
    for k, (a, b) in lora.items():
        out[f"dpo_grad.{k}.lora_a"] = a.grad.detach()
        out[f"dpo_grad.{k}.lora_b"] = b.grad.detach()
    scal["dpo"] = {"loss": f32(loss),
                   "policy_logps_chosen": [f32(v) for v in d["pc"]],
                   "policy_logps_rejected": [f32(v) for v in d["pr"]],
                   "ref_logps_chosen": [f32(v) for v in d["rc"]],
                   "ref_logps_rejected": [f32(v) for v in d["rr"]],
                   "rewards_chosen": [f32(v) for v in d["rewards_chosen"]],
                   "rewards_rejected": [f32(v) for v in d["rewards_rejected"]],
                   "reward_accuracy": f32(acc), "reward_margin": f32(margin)}

    for k, v in out.items():
        assert v.dtype in (torch.float32, torch.int32), (k, v.dtype)
        assert torch.isfinite(v.to(torch.float64)).all(), k
        out[k] = v.contiguous()
    return out, scal


# Self-tests: torch_golden_selftest.py.


def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def version(pkg):
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def main():
    import torch_golden_selftest as st  # imports this module; only definitions run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny-tool", required=True, help="path of anvil_make_tiny_model")
    ap.add_argument("--out-dir", default=str(OUT_DIR))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--no-selftest", action="store_true", help="skip all self-tests")
    ap.add_argument("--no-hf-check", action="store_true", help="skip the transformers/peft cross-check")
    a = ap.parse_args()
    if not Path(a.tiny_tool).exists():
        sys.exit(f"error: --tiny-tool {a.tiny_tool!r} not found")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    t0 = time.time()
    if not a.no_selftest:
        print("[self-tests]")
        st.selftest_rope()
        st.selftest_adamw()
        st.selftest_gradcheck()

    meta = {
        "generator": "scripts/reference/torch_golden.py",
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "gguf": version("gguf"),
                     "safetensors": version("safetensors"), "python": sys.version.split()[0]},
        "dtype": "float32 (tokens int32)",
        "seed": a.seed,
        "seed_note": "numpy.random.default_rng(seed) drawn in this order: SFT tokens [B][T]; DPO prompts "
                     "[pairs][prompt_len], chosen completions, rejected completions (a rejected first "
                     "completion token equal to the chosen one is redrawn); LoRA init per layer, per module "
                     "in lora.modules order: A ~ U(-1/sqrt(in), 1/sqrt(in)) [r][in], then B ~ N(0, b_std^2) "
                     "[out][r]. Every drawn value is stored in the fixtures.",
        "tiny_model": {"tool": "anvil_make_tiny_model", "seed": TINY_SEED},
        "batch": {"B": B, "T": T, "positions": "0..T-1 per sequence", "ignore_index": IGNORE,
                  "mask_prefix": list(SFT_MASK_PREFIX),
                  "targets": "targets[b][t] = tokens[b][t+1]; -100 for t < mask_prefix[b] and t = T-1"},
        "sft": {"loss": "sum over targets != -100 of -log_softmax(logits[b][t])[targets[b][t]], / number "
                        "of such targets in the whole batch (HF)"},
        "lora": {"rank": LORA_RANK, "alpha": LORA_ALPHA, "scale": LORA_SCALE, "modules": LORA_MODULES,
                 "a_init": "U(-1/sqrt(in), 1/sqrt(in))", "b_std": LORA_B_STD,
                 "forward": "y = W x + scale * B (A x); base frozen",
                 "names": "lora.blk.<l>.<module>.weight.lora_a [r][in], .lora_b [out][r]"},
        "adamw": {"optimizer": "torch.optim.AdamW (default for-loop/foreach choice of torch on CPU)",
                  "lr": ADAMW["lr"], "betas": list(ADAMW["betas"]), "eps": ADAMW["eps"],
                  "weight_decay": {"2d": ADAMW["weight_decay_2d"], "1d": ADAMW["weight_decay_1d"]},
                  "param_groups": "every 2-D weight (incl. token_embd and output) decays; 1-D norm weights do not",
                  "max_grad_norm": ADAMW["max_grad_norm"],
                  "clip": "torch.nn.utils.clip_grad_norm_(all params, 1.0) before each step; grad_norm is its "
                          "pre-clip global L2 norm; coefficient min(1, max_norm / (norm + 1e-6))",
                  "steps": ADAMW["steps"],
                  "loss": "adamw.loss[0] at the initial params, [k] after step k (same SFT batch every step)"},
        "dpo": {"loss_type": "sigmoid (TRL)", "beta": DPO_BETA, "pairs": DPO_PAIRS, "prompt_len": DPO_PROMPT,
                "policy": "base + the LoRA init above (scale 2)", "reference": "base, adapters disabled",
                "targets": "targets[i] = tokens[i+1] for prompt_len-1 <= i < T-1, else -100",
                "logps": "sum over targets != -100 of log_softmax(logits)[target] (not a mean)",
                "loss": "mean over pairs of -logsigmoid(beta * ((pc - rc) - (pr - rr)))",
                "rewards": "beta * (policy - ref) per pair; reward_accuracy = mean(chosen > rejected); "
                           "reward_margin = mean(chosen - rejected)"},
        "tensor_names": {
            "inputs": ["input.tokens", "input.targets", "dpo.chosen.tokens", "dpo.rejected.tokens",
                       "dpo.chosen.targets", "dpo.rejected.targets"],
            "sft": ["sft.logits", "sft.loss", "grad.<gguf name>"],
            "lora": ["lora.<gguf name>.lora_a", "lora.<gguf name>.lora_b", "lora_sft.loss", "lora_sft.logits",
                     "lora_grad.<gguf name>.lora_a", "lora_grad.<gguf name>.lora_b"],
            "adamw": ["adamw.loss", "adamw.grad_norm", "adamw.step<k>.<gguf name> (k = 1..5)"],
            "dpo": ["dpo.loss", "dpo.policy_logps_chosen", "dpo.policy_logps_rejected", "dpo.ref_logps_chosen",
                    "dpo.ref_logps_rejected", "dpo.rewards_chosen", "dpo.rewards_rejected",
                    "dpo.reward_accuracy", "dpo.reward_margin", "dpo_grad.<gguf name>.lora_a",
                    "dpo_grad.<gguf name>.lora_b"],
            "layout": "row-major, shape = GGUF ne reversed (e.g. blk.0.attn_q.weight [64][64])"},
        "variants": {},
    }

    with tempfile.TemporaryDirectory() as td:
        for variant, flags in VARIANTS:
            print(f"[{variant}]")
            st.CHECK_PREFIX = f"{variant}: "
            path = Path(td) / f"tiny_{variant}.gguf"
            cmd = [a.tiny_tool, str(path), *flags, "--seed", str(TINY_SEED)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
            sha = sha256(path)
            cfg, P0 = read_gguf(path)
            expect_tied = "--untied" not in flags
            if cfg.tied != expect_tied:
                sys.exit(f"error: {variant}: GGUF has tied = {cfg.tied}")
            inp = make_inputs(a.seed, cfg)
            if variant == "tied" and not a.no_selftest:
                st.selftest_llamacpp(cfg, P0, sha)
            fx, scal = run_variant(cfg, P0, inp)
            if not a.no_selftest and not a.no_hf_check:
                st.selftest_hf(cfg, P0, inp, fx)
            fname = f"torch_{variant}.safetensors"
            save_file(dict(sorted(fx.items())), str(out_dir / fname),
                      # one key: safetensors writes the metadata map in hash order, which would make
                      # the header (and so the file's bytes) differ between identical runs
                      metadata={"torch_golden": json.dumps(
                          {"generator": "scripts/reference/torch_golden.py", "variant": variant,
                           "gguf_sha256": sha, "torch": torch.__version__}, sort_keys=True)})
            os.chmod(out_dir / fname, 0o644)
            meta["variants"][variant] = {
                "fixture": fname, "gguf_args": flags + ["--seed", str(TINY_SEED)], "gguf_sha256": sha,
                "gguf_size": path.stat().st_size, "config": cfg.as_dict(), "params": param_names(cfg),
                "n_tensors": len(fx), **scal}
            d = scal["dpo"]
            print(f"    sft loss {scal['sft_loss']:.6f} ({scal['sft_n_targets']} targets), lora loss "
                  f"{scal['lora_sft_loss']:.6f}, |grad| "
                  f"{math.sqrt(sum(float(fx['grad.' + n].double().pow(2).sum()) for n in param_names(cfg))):.4f}")
            print(f"    adamw loss {' '.join(f'{v:.5f}' for v in scal['adamw_loss'])}; grad_norm "
                  f"{' '.join(f'{v:.4f}' for v in scal['adamw_grad_norm'])}")
            print(f"    dpo loss {d['loss']:.6f}, rewards chosen {d['rewards_chosen']} rejected "
                  f"{d['rewards_rejected']}, acc {d['reward_accuracy']}, margin {d['reward_margin']:.6f}")
            print(f"    wrote {fname}: {len(fx)} tensors, {(out_dir / fname).stat().st_size} bytes, gguf sha256 {sha}")

    meta["gguf_sha256"] = {v: meta["variants"][v]["gguf_sha256"] for v in meta["variants"]}
    meta["self_tests"] = st.SELF_TESTS if not a.no_selftest else "skipped (--no-selftest)"
    (out_dir / "torch_golden.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out_dir / 'torch_golden.json'} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
