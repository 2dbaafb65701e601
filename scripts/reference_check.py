#!/usr/bin/env python3
"""Checks gpt2's loss and gradients against an independent PyTorch GPT-2 in float32.

For each config: random weights go to an llm.c model file and random tokens to a
shard; `gpt2 eval grads` computes the loss and writes its gradients as HDF5 (Hugging
Face names and shapes); PyTorch computes the same from the same file with autograd,
written the way Hugging Face's GPT-2 computes (Conv1D weights, x @ W + b).
Exits 1 if any relative difference exceeds --tol.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # exit 77: ctest reports the check as skipped
    print(f"reference_check: skipped, {e} (scripts/setup.sh --test installs it)")
    sys.exit(77)

# name, n_layer, n_head, n_embd, vocab, max_seq, batch, seq
CONFIGS = {
    "tiny": (2, 2, 16, 64, 8, 2, 8),
    "small": (3, 4, 64, 1000, 512, 2, 300),  # T = 300: attention's row blocks, a partial last
    "d6-short": (6, 6, 384, 50257, 1024, 2, 32),
    "gpt2-short": (12, 12, 768, 50257, 1024, 1, 64),
    "gpt2": (12, 12, 768, 50257, 1024, 4, 256),
}

LLMC_ORDER = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
              "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def random_llmc_params(rng, L, C, V, Vp, maxT):
    """llm.c layout: linear weights (out, in), layer tensors stacked over L."""
    n = lambda *shape, std=0.02: (rng.standard_normal(shape) * std).astype(np.float32)
    wte = n(Vp, C)
    wte[V:] = 0
    return {
        "wte": wte, "wpe": n(maxT, C, std=0.01),
        "ln1w": 1 + n(L, C, std=0.1), "ln1b": n(L, C),
        "qkvw": n(L, 3 * C, C), "qkvb": n(L, 3 * C),
        "attprojw": n(L, C, C), "attprojb": n(L, C),
        "ln2w": 1 + n(L, C, std=0.1), "ln2b": n(L, C),
        "fcw": n(L, 4 * C, C), "fcb": n(L, 4 * C),
        "fcprojw": n(L, C, 4 * C), "fcprojb": n(L, C),
        "lnfw": 1 + n(C, std=0.1), "lnfb": n(C),
    }


def write_llmc(path, p, L, NH, C, V, Vp, maxT):
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for name in LLMC_ORDER:
            f.write(np.ascontiguousarray(p[name], dtype=np.float32).tobytes())


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def write_mask(path, classes):
    """gpt2's loss mask beside a shard (data/shard.h): one class byte per token."""
    header = np.zeros(256, dtype=np.int32)
    header[:4] = [20261202, 1, len(classes), 0]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(classes, dtype=np.uint8).tobytes())


def hf_params(p, L):
    """Hugging Face names and shapes (Conv1D weights are (in, out)) as leaf tensors."""
    t = lambda a: torch.tensor(np.ascontiguousarray(a), requires_grad=True)
    hf = {"wte.weight": t(p["wte"]), "wpe.weight": t(p["wpe"]),
          "ln_f.weight": t(p["lnfw"]), "ln_f.bias": t(p["lnfb"])}
    for l in range(L):
        h = f"h.{l}."
        hf[h + "ln_1.weight"], hf[h + "ln_1.bias"] = t(p["ln1w"][l]), t(p["ln1b"][l])
        hf[h + "attn.c_attn.weight"], hf[h + "attn.c_attn.bias"] = t(p["qkvw"][l].T), t(p["qkvb"][l])
        hf[h + "attn.c_proj.weight"], hf[h + "attn.c_proj.bias"] = t(p["attprojw"][l].T), t(p["attprojb"][l])
        hf[h + "ln_2.weight"], hf[h + "ln_2.bias"] = t(p["ln2w"][l]), t(p["ln2b"][l])
        hf[h + "mlp.c_fc.weight"], hf[h + "mlp.c_fc.bias"] = t(p["fcw"][l].T), t(p["fcb"][l])
        hf[h + "mlp.c_proj.weight"], hf[h + "mlp.c_proj.bias"] = t(p["fcprojw"][l].T), t(p["fcprojb"][l])
    return hf


def torch_loss(w, idx, targets, L, NH, C, V):
    B, T = idx.shape
    hs = C // NH
    x = w["wte.weight"][idx] + w["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), w[h + "ln_1.weight"], w[h + "ln_1.bias"], eps=1e-5)
        qkv = a @ w[h + "attn.c_attn.weight"] + w[h + "attn.c_attn.bias"]
        q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in qkv.split(C, dim=2))
        att = (q @ k.transpose(-2, -1)) / (hs ** 0.5)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w[h + "attn.c_proj.weight"] + w[h + "attn.c_proj.bias"]
        m = F.layer_norm(x, (C,), w[h + "ln_2.weight"], w[h + "ln_2.bias"], eps=1e-5)
        m = F.gelu(m @ w[h + "mlp.c_fc.weight"] + w[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ w[h + "mlp.c_proj.weight"] + w[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), w["ln_f.weight"], w["ln_f.bias"], eps=1e-5)
    logits = x @ w["wte.weight"][:V].T
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))


def check(gpt2, name, tol, seed, loss_on):
    L, NH, C, V, maxT, B, T = CONFIGS[name]
    Vp = (V + 127) // 128 * 128
    rng = np.random.default_rng(seed)
    p = random_llmc_params(rng, L, C, V, Vp, maxT)
    tokens = rng.integers(0, V, B * T + 1)
    # With a loss mask: each token is never a target (0), a prompt (1) or a completion (2).
    classes = rng.integers(0, 3, B * T + 1) if loss_on else None
    with tempfile.TemporaryDirectory() as tmp:
        model, shard, grads = (os.path.join(tmp, f) for f in ("model.bin", "shard.bin", "grads.h5"))
        write_llmc(model, p, L, NH, C, V, Vp, maxT)
        write_shard(shard, tokens)
        args = [gpt2, "eval", "grads", "--model", model, "--data", shard,
                "--batch", str(B), "--seq", str(T), "--out", grads]
        if loss_on:
            write_mask(shard + ".mask", classes)
            args += ["--loss-on", loss_on]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        ours_loss = float(out.split()[-1])
        with h5py.File(grads, "r") as f:
            ours = {k: f[k][...] for k in f.keys()}

    w = hf_params(p, L)
    idx = torch.tensor(tokens[:-1].reshape(B, T), dtype=torch.long)
    tgt = torch.tensor(tokens[1:].reshape(B, T), dtype=torch.long)
    if loss_on:  # PyTorch's ignore_index: the mean over the scored targets only
        scored = classes[1:] >= (1 if loss_on == "all" else 2)
        tgt[torch.tensor(~scored.reshape(B, T))] = -100
    loss = torch_loss(w, idx, tgt, L, NH, C, V)
    loss.backward()

    loss_rel = abs(ours_loss - loss.item()) / abs(loss.item())
    worst, worst_name = 0.0, ""
    for k, t in w.items():
        ref = t.grad.numpy()
        if ours[k].shape != ref.shape:
            sys.exit(f"{name}: {k} has shape {ours[k].shape}, PyTorch's is {ref.shape}")
        rel = np.abs(ours[k] - ref).max() / max(np.abs(ref).max(), 1e-30)
        if rel > worst:
            worst, worst_name = rel, k
    ok = loss_rel <= tol and worst <= tol
    print(f"{name:11s}{' loss on ' + loss_on if loss_on else ''} L{L} NH{NH} C{C} V{V} B{B} T{T}: loss {ours_loss:.7f} vs {loss.item():.7f} "
          f"(rel {loss_rel:.1e}), gradients max rel {worst:.1e} ({worst_name}) "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt2", default="build/gpt2", help="the gpt2 program")
    ap.add_argument("--configs", default="tiny,small,gpt2-short",
                    help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="largest relative difference, per tensor: max|ours - ref| / max|ref|")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-on", choices=["completion", "all"],
                    help="also write a random loss mask beside the shard and score these targets")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    ok = all([check(args.gpt2, c, args.tol, args.seed, args.loss_on)
              for c in args.configs.split(",")])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
