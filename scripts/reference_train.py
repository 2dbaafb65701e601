#!/usr/bin/env python3
"""Checks `gpt2 train`'s first step losses against PyTorch's AdamW on the same weights.

Random weights go to an llm.c model file and pseudo-random tokens to a shard; gpt2
trains with shuffling off, a constant learning rate and no clipping; PyTorch trains
the model of reference_check.py with torch.optim.AdamW, weight decay on 2+-dimensional
tensors only, on the same batches (batch i = the B*T+1 tokens at i*B*T). Exits 1 if
any step's loss differs by more than --tol (absolute).

With --grad-accum K, gpt2 takes K micro-batches of B rows per step and PyTorch one batch
of K*B rows; with --loss-on, a random loss mask goes beside the shard and PyTorch
ignores the unscored targets (ignore_index): both check that the loss is the mean over
the scored targets of the whole step, not a mean of micro-batch means.
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_check import (CONFIGS, hf_params, random_llmc_params, torch_loss,  # noqa: E402
                             write_llmc, write_mask, write_shard)  # exits 77 without torch, h5py or numpy
import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt2", default="build/gpt2")
    ap.add_argument("--config", default="small", choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--loss-on", choices=["completion", "all"])
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    L, NH, C, V, maxT, B, T = CONFIGS[args.config]
    Vp = (V + 127) // 128 * 128
    rng = np.random.default_rng(args.seed)
    p = random_llmc_params(rng, L, C, V, Vp, maxT)
    # Text-like data: a skewed distribution over a slice of the vocabulary.
    K = args.grad_accum
    n = args.steps * K * B * T + 1
    tokens = np.minimum(rng.zipf(1.3, n) - 1, V - 1)
    classes = rng.integers(0, 3, n) if args.loss_on else None

    with tempfile.TemporaryDirectory() as tmp:
        model, shard = os.path.join(tmp, "model.bin"), os.path.join(tmp, "train.bin")
        write_llmc(model, p, L, NH, C, V, Vp, maxT)
        write_shard(shard, tokens)
        cmd = [args.gpt2, "train", "--model", model, "--train-data", shard, "--batch", str(B),
               "--seq", str(T), "--steps", str(args.steps), "--shuffle", "off",
               "--grad-accum", str(K),
               "--lr-schedule", "constant", "--lr", repr(args.lr), "--warmup", "0",
               "--grad-clip", "0", "--weight-decay", repr(args.weight_decay),
               "--beta1", repr(args.beta1), "--beta2", repr(args.beta2), "--eps", repr(args.eps),
               "--out", os.path.join(tmp, "run")]
        if args.loss_on:
            write_mask(shard + ".mask", classes)
            cmd += ["--loss-on", args.loss_on]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ours = [float(line.split("| loss ")[1].split()[0]) for line in out.splitlines()
            if line.startswith("step ") and "| loss " in line]

    w = hf_params(p, L)
    decay = [t for t in w.values() if t.dim() >= 2]
    no_decay = [t for t in w.values() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, foreach=False)
    worst = 0.0
    for i in range(args.steps):
        at = slice(i * K * B * T, (i + 1) * K * B * T + 1)
        chunk = tokens[at]
        idx = torch.tensor(chunk[:-1].reshape(K * B, T), dtype=torch.long)
        tgt = torch.tensor(chunk[1:].reshape(K * B, T), dtype=torch.long)
        if args.loss_on:
            scored = classes[at][1:] >= (1 if args.loss_on == "all" else 2)
            tgt[torch.tensor(~scored.reshape(K * B, T))] = -100
        opt.zero_grad()
        loss = torch_loss(w, idx, tgt, L, NH, C, V)
        loss.backward()
        opt.step()
        diff = abs(ours[i] - loss.item())
        worst = max(worst, diff)
        print(f"step {i + 1:2d}: gpt2 {ours[i]:.6f}  pytorch {loss.item():.6f}  diff {diff:.1e}")
    ok = len(ours) == args.steps and worst <= args.tol
    print(f"{args.config}: {args.steps} steps of {K} x {B} x {T}"
          f"{', loss on ' + args.loss_on if args.loss_on else ''}, largest loss difference {worst:.1e} "
          f"(tolerance {args.tol}) {'ok' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
