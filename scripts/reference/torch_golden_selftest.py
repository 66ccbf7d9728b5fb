#!/usr/bin/env python3
"""Self-tests of the PyTorch training oracle (torch_golden.py), run before it writes fixtures:
its tied model's logits against llama.cpp's fixture, float64 gradcheck of the SFT / LoRA / DPO
losses on a small random model, RoPE against a complex-number rotation, AdamW against the closed
form of notes section 5.3, and (when transformers and peft import) HF LlamaForCausalLM + PEFT."""

import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from torch_golden import *  # noqa: F401,F403  (the model, its constants and helpers)
from torch_golden import Config, TINY_JSON  # names used explicitly below

SELF_TESTS = []  # the passed checks, recorded in torch_golden.json
CHECK_PREFIX = ""  # set by torch_golden.main per variant

def check(ok, what):
    print(f"    [{'ok' if ok else 'FAIL'}] {what}")
    SELF_TESTS.append(CHECK_PREFIX + what)
    if not ok:
        sys.exit(f"error: self-test failed: {what}")


def selftest_llamacpp(cfg, P, sha):
    """Our torch forward vs llama.cpp's logits for the same tiny F32 GGUF (tiny_model.json)."""
    if not TINY_JSON.exists():
        print("    [skip] tests/fixtures/tiny_model.json not found")
        return
    ref = json.loads(TINY_JSON.read_text())
    v = ref.get("variants", {}).get("f32")
    if not v or v.get("sha256") != sha:
        print("    [skip] tiny_model.json's f32 variant is a different GGUF (sha256 differs)")
        return
    worst = 0.0
    with torch.no_grad():
        for s in v["sequences"]:
            ids = torch.tensor([s["ids"]], dtype=torch.int64)
            z = forward(cfg, P, ids)[0].double()
            zr = torch.tensor(s["logits"], dtype=torch.float64)
            worst = max(worst, float(((z - zr).abs() / (1.0 + zr.abs())).max()))
    check(worst < 2e-4, f"forward == llama.cpp logits of the tied F32 tiny model "
                        f"({len(v['sequences'])} sequences, max rel err {worst:.2e})")


def small_model(tied, n_rot, dtype, seed=7):
    cfg = Config(n_vocab=11, n_embd=16, n_layer=2, n_head=4, n_head_kv=2, n_ff=6, n_rot=n_rot,
                 rope_freq_base=10000.0, rms_eps=1e-5, tied=tied)
    g = torch.Generator().manual_seed(seed)
    P = {}
    for n in param_names(cfg):
        if n.endswith("norm.weight"):
            shape = (cfg.n_embd,)
            P[n] = (1.0 + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
            continue
        if n in ("token_embd.weight", "output.weight"):
            shape = (cfg.n_vocab, cfg.n_embd)
        else:
            shape = lora_shape(cfg, n.split(".")[2])
        P[n] = (torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(shape[-1])).to(dtype)
    return cfg, P


def selftest_gradcheck():
    """gradcheck (float64) of the SFT, LoRA and DPO losses on a small model (C 16, H 4, Hkv 2, D 4);
    tied with n_rot = D, untied with n_rot = 2 < D."""
    Tn = 6
    rng = np.random.default_rng(3)
    for tied in (True, False):
        cfg, P = small_model(tied, 4 if tied else 2, torch.float64)
        names = param_names(cfg)
        toks = torch.from_numpy(rng.integers(0, cfg.n_vocab, size=(2, Tn)))
        tg = torch.full_like(toks, IGNORE)
        tg[:, :-1] = toks[:, 1:]
        tg[0, :2] = IGNORE

        def f_sft(*ps):
            return sft_loss(forward(cfg, dict(zip(names, ps)), toks), tg)

        ok = torch.autograd.gradcheck(f_sft, [P[n].clone().requires_grad_(True) for n in names],
                                      eps=1e-6, atol=1e-6, rtol=1e-4)
        check(ok, f"gradcheck SFT loss, all params ({'tied' if tied else 'untied'}, n_rot {cfg.n_rot}, D 4)")

        lora_np = {}
        for l in range(cfg.n_layer):
            for m in LORA_MODULES:
                n_out, n_in = lora_shape(cfg, m)
                lora_np[f"blk.{l}.{m}.weight"] = (rng.uniform(-0.5, 0.5, (LORA_RANK, n_in)),
                                                  rng.normal(0, 0.3, (n_out, LORA_RANK)))
        keys = list(lora_np)
        flat = [torch.tensor(x, dtype=torch.float64, requires_grad=True)
                for k in keys for x in lora_np[k]]

        def unflat(fl):
            return {k: (fl[2 * i], fl[2 * i + 1]) for i, k in enumerate(keys)}

        def f_lora(*fl):
            return sft_loss(forward(cfg, P, toks, unflat(fl)), tg)

        check(torch.autograd.gradcheck(f_lora, flat, eps=1e-6, atol=1e-6, rtol=1e-4),
              f"gradcheck LoRA SFT loss, all A and B ({'tied' if tied else 'untied'})")

        ch = toks.clone()
        rj = toks.clone()
        rj[:, 3:] = torch.from_numpy(rng.integers(0, cfg.n_vocab, size=(2, Tn - 3)))
        ch_t = torch.full_like(ch, IGNORE)
        ch_t[:, 2:-1] = ch[:, 3:]
        rj_t = torch.full_like(rj, IGNORE)
        rj_t[:, 2:-1] = rj[:, 3:]

        def f_dpo(*fl):
            return dpo_terms(cfg, P, unflat(fl), ch, rj, ch_t, rj_t, beta=1.0)[0]

        check(torch.autograd.gradcheck(f_dpo, flat, eps=1e-6, atol=1e-6, rtol=1e-4),
              f"gradcheck DPO loss, all A and B ({'tied' if tied else 'untied'})")


def selftest_rope():
    """NORM RoPE == complex multiplication of (x[2i] + i x[2i+1]) by exp(i theta)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 3, 16, generator=g, dtype=torch.float64)
    cos, sin = rope_cos_sin(7, 16, 10000.0, torch.float64)
    y = rope_norm(x, cos, sin, 16)
    pos = torch.arange(7, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    rot = torch.polar(torch.ones(7, 8, dtype=torch.float64), pos * freq)[None, :, None, :]
    yc = torch.view_as_real(torch.view_as_complex(x.reshape(2, 7, 3, 8, 2).contiguous()) * rot)
    check(torch.allclose(y, yc.reshape(y.shape), atol=1e-12), "RoPE NORM == complex rotation of adjacent pairs")


def selftest_adamw():
    """torch.optim.AdamW + clip_grad_norm_ == the closed form of notes 5.3 (float64)."""
    g = torch.Generator().manual_seed(2)
    w2 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    w1 = torch.randn(3, generator=g, dtype=torch.float64)
    tw = [w2.clone().requires_grad_(True), w1.clone().requires_grad_(True)]
    opt = torch.optim.AdamW([{"params": [tw[0]], "weight_decay": 0.01},
                             {"params": [tw[1]], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    mw = [w2.clone(), w1.clone()]
    m = [torch.zeros_like(w) for w in mw]
    v = [torch.zeros_like(w) for w in mw]
    wds = [0.01, 0.0]
    for t in range(1, 6):
        opt.zero_grad()
        loss = (tw[0].sin().sum() * 3.0 + (tw[1] ** 2).sum()) * (t + 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tw, 1.0)
        opt.step()
        gr = [torch.cos(mw[0]) * 3.0 * (t + 1), 2 * mw[1] * (t + 1)]
        norm = math.sqrt(sum(float((x ** 2).sum()) for x in gr))
        c = min(1.0, 1.0 / (norm + 1e-6))  # clip_grad_norm_'s coefficient
        for i in range(2):
            gi = gr[i] * c
            mw[i] = mw[i] * (1 - 1e-3 * wds[i])
            m[i] = 0.9 * m[i] + 0.1 * gi
            v[i] = 0.999 * v[i] + 0.001 * gi * gi
            mh = m[i] / (1 - 0.9 ** t)
            vh = v[i] / (1 - 0.999 ** t)
            mw[i] = mw[i] - 1e-3 * mh / (vh.sqrt() + 1e-8)
    err = max(float((a.detach() - b).abs().max()) for a, b in zip(tw, mw))
    check(err < 1e-12, f"AdamW + clip_grad_norm_ == closed form (notes 5.3), max err {err:.1e}")


def hf_unpermute(w, n_head):
    """GGUF Q/K rows (NORM-mode pairs) -> HF rows (rotate_half halves); inverse of the converter."""
    out = w.shape[0]
    return w.reshape(n_head, out // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def hf_permute(w, n_head):
    out = w.shape[0]
    return w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


HF_MODULES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def selftest_hf(cfg, P0, inp, fx):
    """Independent cross-check with transformers' LlamaForCausalLM (+ PEFT LoRA) when installed."""
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        print("    [skip] transformers not installed: no HF cross-check")
        return
    hcfg = LlamaConfig(vocab_size=cfg.n_vocab, hidden_size=cfg.n_embd, intermediate_size=cfg.n_ff,
                       num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                       num_key_value_heads=cfg.n_head_kv, rms_norm_eps=cfg.rms_eps,
                       rope_theta=cfg.rope_freq_base, max_position_embeddings=256,
                       tie_word_embeddings=cfg.tied, attention_bias=False, mlp_bias=False,
                       attn_implementation="eager", torch_dtype=torch.float32)
    assert cfg.n_rot == cfg.head_dim
    model = LlamaForCausalLM(hcfg).to(torch.float32)

    def perm_for(module):
        return {"attn_q": cfg.n_head, "attn_k": cfg.n_head_kv}.get(module)

    sd = {"model.embed_tokens.weight": P0["token_embd.weight"], "model.norm.weight": P0["output_norm.weight"]}
    if not cfg.tied:
        sd["lm_head.weight"] = P0["output.weight"]
    for l in range(cfg.n_layer):
        p = f"blk.{l}."
        sd[f"model.layers.{l}.input_layernorm.weight"] = P0[p + "attn_norm.weight"]
        sd[f"model.layers.{l}.post_attention_layernorm.weight"] = P0[p + "ffn_norm.weight"]
        for m, hm in HF_MODULES.items():
            w = P0[p + m + ".weight"]
            sd[f"model.layers.{l}.{hm}.weight"] = hf_unpermute(w, perm_for(m)) if perm_for(m) else w
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (cfg.tied and k == "lm_head.weight") and "rotary" not in k]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.tied:
        model.tie_weights()
    tokens = torch.from_numpy(inp["tokens"]).long()
    labels = torch.full_like(tokens, IGNORE)
    labels[:, 1:] = torch.from_numpy(inp["targets"])[:, :-1]
    res = model(input_ids=tokens, labels=labels)
    dz = float((res.logits.detach() - fx["sft.logits"]).abs().max())
    dl = abs(float(res.loss) - float(fx["sft.loss"][0]))
    check(dz < 1e-4 and dl < 1e-5, f"HF transformers {transformers.__version__}: logits (max err {dz:.1e}) "
                                   f"and loss (err {dl:.1e}) == ours")
    res.loss.backward()
    hf_grad = {"token_embd.weight": model.model.embed_tokens.weight.grad,
               "output_norm.weight": model.model.norm.weight.grad}
    if not cfg.tied:
        hf_grad["output.weight"] = model.lm_head.weight.grad
    for l in range(cfg.n_layer):
        lay = model.model.layers[l]
        hf_grad[f"blk.{l}.attn_norm.weight"] = lay.input_layernorm.weight.grad
        hf_grad[f"blk.{l}.ffn_norm.weight"] = lay.post_attention_layernorm.weight.grad
        for m, hm in HF_MODULES.items():
            gw = lay.get_submodule(hm).weight.grad
            hf_grad[f"blk.{l}.{m}.weight"] = hf_permute(gw, perm_for(m)) if perm_for(m) else gw
    rel = max(float((hf_grad[n] - fx["grad." + n]).abs().max() / (fx["grad." + n].abs().max() + 1e-12))
              for n in param_names(cfg))
    check(rel < 1e-4, f"HF gradients of every parameter == ours (max err / max |grad| {rel:.1e})")

    try:
        import peft
        from peft import LoraConfig, get_peft_model
    except ImportError:
        print("    [skip] peft not installed: no PEFT LoRA/DPO cross-check")
        return
    model.zero_grad(set_to_none=True)
    pm = get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                          bias="none", target_modules=[h.split(".")[1] for h in HF_MODULES.values()]))

    def lora_layers():
        for l in range(cfg.n_layer):
            lay = pm.base_model.model.model.layers[l]
            for m, hm in HF_MODULES.items():
                yield f"blk.{l}.{m}.weight", m, lay.get_submodule(hm)

    def set_lora():
        with torch.no_grad():
            for k, m, mod in lora_layers():
                a, b = torch.from_numpy(inp["lora"][k][0]), torch.from_numpy(inp["lora"][k][1])
                mod.lora_A["default"].weight.copy_(a)
                mod.lora_B["default"].weight.copy_(hf_unpermute(b, perm_for(m)) if perm_for(m) else b)
                mod.lora_A["default"].weight.grad = None
                mod.lora_B["default"].weight.grad = None

    def lora_grads():
        g = {}
        for k, m, mod in lora_layers():
            gb = mod.lora_B["default"].weight.grad
            g[k + ".lora_a"] = mod.lora_A["default"].weight.grad
            g[k + ".lora_b"] = hf_permute(gb, perm_for(m)) if perm_for(m) else gb
        return g

    def max_rel(g, prefix):
        return max(float((g[k] - fx[prefix + k]).abs().max() / (fx[prefix + k].abs().max() + 1e-12)) for k in g)

    set_lora()
    res = pm(input_ids=tokens, labels=labels)
    dl = abs(float(res.loss) - float(fx["lora_sft.loss"][0]))
    res.loss.backward()
    rel = max_rel(lora_grads(), "lora_grad.")
    check(dl < 1e-5 and rel < 1e-4, f"PEFT {peft.__version__} LoRA loss (err {dl:.1e}) and A/B grads "
                                    f"(max rel err {rel:.1e}) == ours")

    set_lora()
    toks = torch.cat((torch.from_numpy(inp["chosen"]), torch.from_numpy(inp["rejected"]))).long()
    tg = torch.cat((torch.from_numpy(inp["chosen_t"]), torch.from_numpy(inp["rejected_t"])))
    pol = seq_logps(pm(input_ids=toks).logits, tg)
    with torch.no_grad(), pm.disable_adapter():
        ref = seq_logps(pm(input_ids=toks).logits, tg)
    n = DPO_PAIRS
    loss = (-F.logsigmoid(DPO_BETA * ((pol[:n] - ref[:n]) - (pol[n:] - ref[n:])))).mean()
    loss.backward()
    dl = abs(float(loss) - float(fx["dpo.loss"][0]))
    dref = float(torch.cat((ref[:n] - fx["dpo.ref_logps_chosen"], ref[n:] - fx["dpo.ref_logps_rejected"])).abs().max())
    rel = max_rel(lora_grads(), "dpo_grad.")
    check(dl < 1e-6 and dref < 1e-3 and rel < 1e-4,
          f"PEFT DPO (adapter disabled = ref): loss (err {dl:.1e}), ref logps (err {dref:.1e}), "
          f"A/B grads (max rel err {rel:.1e}) == ours")


# ---------------------------------------------------------------------------------------------
