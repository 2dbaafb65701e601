#!/usr/bin/env python3
"""Side-by-side speed of `gpt2 bench` and PyTorch training GPT-2 124M on this CPU.

`compare` (what scripts/bench_vs_pytorch.sh runs) times, for each B x T config, our
`gpt2 bench --json` and a PyTorch GPT-2 124M (`torch`, below, in its own process) in four
modes: training steps in fp32 and bf16, and forward passes (with the loss) in fp32 and
bf16. It prints tokens/s of each, ours/PyTorch and bf16/fp32. Each mode runs in fresh
processes, ours then PyTorch's, one after the other; both get the same OpenMP
environment (OMP_NUM_THREADS, OMP_WAIT_POLICY) and torch.set_num_threads the same
threads; warm-up steps are excluded and the median of the timed steps counts.

The PyTorch model is nanoGPT's GPT-2, written here: token + position embedding, 12
pre-LayerNorm blocks with causal self-attention (1.13 has no scaled_dot_product_attention:
masked softmax of q k^T / sqrt(d)), a GELU (tanh) MLP, a final LayerNorm and an LM head
tied to the token embedding, over the vocabulary padded to 50304 (nanoGPT's choice, and
the size of our products too). A timed training step is ours: zero_grad(set_to_none),
forward with the cross-entropy loss, backward, clip_grad_norm_(1.0) and AdamW (betas
0.9/0.95, weight decay 0.1 on matrices and embeddings only). bf16 is
torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass (weights, gradients
and AdamW stay fp32, as ours do); forward-only runs under torch.inference_mode().

How PyTorch 1.13 (Debian's python3-torch: OpenBLAS for fp32 products, oneDNN 2.6 for
bf16 ones) is set up, each measured on the 2-core AMD EPYC (Zen 5) machine, shared:
  - environment of the PyTorch process only: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
    unset, so that OpenBLAS picks its own kernels for this CPU (Cooperlake, AVX-512)
    instead of the Haswell ones the environment forces; glibc keeps its memory
    (MALLOC_MMAP_THRESHOLD_=2000000000 MALLOC_TRIM_THRESHOLD_=4000000000
    MALLOC_TOP_PAD_=536870912: no mmap, munmap and page faults for every large tensor);
  - both programs: OMP_WAIT_POLICY=passive (--omp-wait-policy): idle OpenMP threads
    sleep at once instead of spinning. On a loaded machine spinning threads take the
    cores from the working ones: one attention-score bmm of PyTorch at B=4 T=256 (48
    small OpenBLAS products, one after the other) took 790 ms instead of 7 ms, and a
    training step went from 49 to 84 tok/s (ours from 70 to 90);
  - torch.set_num_threads(threads); AdamW(foreach=True), the multi-tensor path (a little
    faster than the per-parameter loop; `fused` is CUDA-only in 1.13);
  - fp32 forward-only: the linear layers converted to oneDNN (torch.utils.mkldnn.
    to_mkldnn: MkldnnLinear, same loss to the last digit), about 1.4x faster than
    OpenBLAS. Not for bf16 (autocast's own oneDNN bf16 path is faster) nor training
    (to_mkldnn is for inference only).
  Tried and not kept, no faster within the noise: ATEN_CPU_CAPABILITY=avx512 (Debian's
  build picks AVX2 kernels), contiguous q, k and v before the attention products,
  torch.jit.script + optimize_for_inference and torch.jit.trace + freeze for forward.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

# Debian's PyTorch 1.13; `torch` runs it.
PYTHON = "/usr/bin/python3"
MODES = ["train-fp32", "train-bf16", "fwd-fp32", "fwd-bf16"]
# glibc keeps what it allocates (see the header).
TORCH_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "2000000000",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_TOP_PAD_": "536870912",
}


# ----------------------------------------------------------------------------------------
# The PyTorch side (runs in its own process, `torch` subcommand).


def torch_bench(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    training = args.mode.startswith("train")
    bf16 = args.mode.endswith("bf16")
    if bf16 and not torch.backends.mkldnn.is_available():
        sys.exit("this PyTorch has no oneDNN (mkldnn): bf16 would not be native")

    class SelfAttention(nn.Module):
        def __init__(self, C, n_head, max_seq):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.n_head = n_head
            mask = torch.ones(max_seq, max_seq, dtype=torch.bool).triu(1)
            self.register_buffer("mask", mask.view(1, 1, max_seq, max_seq), persistent=False)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            hs = C // self.n_head
            q = q.view(B, T, self.n_head, hs).transpose(1, 2)
            k = k.view(B, T, self.n_head, hs).transpose(1, 2)
            v = v.view(B, T, self.n_head, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class MLP(nn.Module):
        def __init__(self, C):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self, C, n_head, max_seq):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.attn = SelfAttention(C, n_head, max_seq)
            self.ln_2 = nn.LayerNorm(C)
            self.mlp = MLP(C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self, n_layer=12, n_head=12, C=768, vocab=50304, max_seq=1024):
            super().__init__()
            self.wte = nn.Embedding(vocab, C)
            self.wpe = nn.Embedding(max_seq, C)
            self.h = nn.ModuleList([Block(C, n_head, max_seq) for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, vocab, bias=False)
            self.lm_head.weight = self.wte.weight  # tied
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith(".bias"):
                    nn.init.zeros_(p)

        def forward(self, idx, targets):
            B, T = idx.shape
            pos = torch.arange(T, device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    torch.manual_seed(1337)
    model = GPT()
    n_params = sum(p.numel() for p in model.parameters())
    B, T = args.batch, args.seq
    data = torch.randint(0, 50257, (B, T + 1))
    idx, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    if training:
        model.train()
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = model(idx, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
    else:
        model.eval()
        if not bf16:  # the linear layers on oneDNN (see the header)
            from torch.utils import mkldnn
            model = mkldnn.to_mkldnn(model)

        def step():
            with torch.inference_mode(), autocast():
                return model(idx, targets).item()

    times, loss = [], 0.0
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "program": "pytorch", "torch": torch.__version__, "mode": args.mode,
        "batch": B, "seq": T, "threads": torch.get_num_threads(), "params": n_params,
        "ms_per_step": 1e3 * median, "tok_per_s": B * T / median, "loss": loss,
    }))


# ----------------------------------------------------------------------------------------
# The driver: both programs, the table.


def run_json(cmd, env):
    """The last line of cmd's output as JSON, or None (saying why) if cmd failed."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"bench_vs_pytorch: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}{r.stdout}",
              file=sys.stderr, flush=True)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def ours(args, B, T, mode, env):
    cmd = [args.gpt2, "bench", "--model", "gpt2", "--batch", str(B), "--seq", str(T),
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--precision", mode.split("-")[1], "--json"]
    if mode.startswith("fwd"):
        cmd.append("--forward-only")
    return run_json(cmd, env)


def pytorch(args, B, T, mode, env):
    cmd = [PYTHON, os.path.abspath(__file__), "torch", "--batch", str(B), "--seq", str(T),
           "--mode", mode, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    return run_json(cmd, env)


def parse_configs(text):
    configs = []
    for item in text.split(","):
        try:
            b, t = item.lower().split("x")
            configs.append((int(b), int(t)))
        except ValueError:
            sys.exit(f"bench_vs_pytorch: --configs: '{item}' is not BxT (e.g. 4x256)")
    return configs


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def print_table(configs, results, rounds):
    """tokens/s of both programs per config, training and forward, with the ratios: with
    several rounds, the median over rounds of each figure, each ratio taken within a round
    (the runs of one round are minutes apart, so they share the machine's drift)."""

    def tokens(B, T, kind, precision, program, round_):  # program 0: ours, 1: PyTorch
        runs = results.get((B, T, f"{kind}-{precision}"))
        r = runs[round_][program] if runs else None
        return r["tok_per_s"] if r else None

    def cell(x, width, ratio=False):
        text = "-" if x is None else f"{x:.2f}x" if ratio else f"{x:.1f}"
        return f"{text:>{width}}"

    def div(a, b):
        return a / b if a is not None and b else None

    columns = [("ours fp32", 9), ("ours bf16", 9), ("bf16/fp32", 9), ("torch fp32", 10),
               ("torch bf16", 10), ("bf16/fp32", 9), ("ours/torch fp32", 15),
               ("ours/torch bf16", 15)]
    header = f"{'B x T':>8} {'':>5} | " + " ".join(f"{name:>{w}}" for name, w in columns)
    print("\ntokens/s (median step" + (f"; median of {rounds} rounds)" if rounds > 1 else ")"))
    print(header)
    print("-" * len(header))
    spreads = []
    for B, T in configs:
        for kind in ("train", "fwd"):
            per_round = []
            for i in range(rounds):
                of, ob = tokens(B, T, kind, "fp32", 0, i), tokens(B, T, kind, "bf16", 0, i)
                pf, pb = tokens(B, T, kind, "fp32", 1, i), tokens(B, T, kind, "bf16", 1, i)
                per_round.append([of, ob, div(ob, of), pf, pb, div(pb, pf), div(of, pf),
                                  div(ob, pb)])
            columns_of_rounds = list(zip(*per_round))
            if all(x is None for i in (0, 1, 3, 4) for x in columns_of_rounds[i]):
                continue
            values = [median(c) for c in columns_of_rounds]
            ratio = [False, False, True, False, False, True, True, True]
            print(f"{f'{B}x{T}':>8} {kind:>5} | " +
                  " ".join(cell(v, w, r) for v, r, (_, w) in zip(values, ratio, columns)))
            if rounds > 1:
                ranges = []
                for name, i in (("ours bf16/fp32", 2), ("ours/torch fp32", 6),
                                ("ours/torch bf16", 7)):
                    got = [x for x in columns_of_rounds[i] if x is not None]
                    if got:
                        ranges.append(f"{name} {min(got):.2f}-{max(got):.2f}x")
                spreads.append(f"  {B}x{T} {kind}: " + ", ".join(ranges))
    if spreads:
        print(f"\nratios over the {rounds} rounds (lowest-highest):")
        print("\n".join(spreads))


def compare(args):
    if not os.access(args.gpt2, os.X_OK):
        sys.exit(f"bench_vs_pytorch: {args.gpt2}: not an executable (build it, or give --gpt2)")
    if args.quick:
        args.steps, args.warmup = 2, 1
    if args.rounds < 1:
        sys.exit(f"bench_vs_pytorch: --rounds: must be at least 1, got {args.rounds}")
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            sys.exit(f"bench_vs_pytorch: --modes: unknown mode '{m}' (known: {','.join(MODES)})")
    configs = parse_configs(args.configs)
    base = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.omp_wait_policy != "env":
        base["OMP_WAIT_POLICY"] = args.omp_wait_policy
    unset = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    torch_env = {k: v for k, v in base.items() if k not in unset}
    torch_env.update(TORCH_MALLOC)

    print(f"gpt2 bench ({args.gpt2}) vs PyTorch ({PYTHON}), GPT-2 124M, {args.threads} threads "
          f"(OMP_WAIT_POLICY={base.get('OMP_WAIT_POLICY', 'unset')}), {args.warmup} warm-up + "
          f"median of {args.steps} steps", flush=True)
    results = {}
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
        for B, T in configs:
            for mode in modes:
                o = ours(args, B, T, mode, base)
                p = pytorch(args, B, T, mode, torch_env)
                results.setdefault((B, T, mode), []).append((o, p))
                report(B, T, mode, o, p)

    print_table(configs, results, args.rounds)
    if args.json:
        with open(args.json, "w") as f:
            for (B, T, mode), runs in results.items():
                for round_, (o, p) in enumerate(runs):
                    record = {"batch": B, "seq": T, "mode": mode, "round": round_ + 1,
                              "ours": o, "pytorch": p}
                    f.write(json.dumps(record) + "\n")


def report(B, T, mode, o, p):
    line = f"  {B}x{T} {mode}: ours "
    line += (f"{o['tok_per_s']:.1f} tok/s (MFU {100 * o['mfu']:.1f}% of the "
             f"{o['precision']} peak, {o['peak_gflops']:.0f} GFLOP/s)" if o else "failed")
    line += (f", PyTorch {p['tok_per_s']:.1f} tok/s (loss {p['loss']:.3f})" if p
             else ", PyTorch failed")
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="both programs, all configs and modes, and the table")
    c.add_argument("--gpt2", default="build/gpt2", help="our program (default build/gpt2)")
    c.add_argument("--configs", default="4x256,1x1024", help="B x T configs, comma-separated")
    c.add_argument("--modes", default=",".join(MODES), help="of " + ",".join(MODES))
    c.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    c.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    c.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both")
    c.add_argument("--omp-wait-policy", choices=["passive", "active", "env"], default="passive",
                   help="OMP_WAIT_POLICY for both programs (env: as in the environment)")
    c.add_argument("--rounds", type=int, default=1,
                   help="run every config and mode this many times, interleaved; the table "
                        "gives medians and the ratios' range (this VM drifts by 10-20%%)")
    c.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up + 2 timed steps")
    c.add_argument("--json", help="also write every result as JSON lines to this file")
    t = sub.add_parser("torch", help="the PyTorch side alone: one config and mode, one JSON line")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--seq", type=int, default=256)
    t.add_argument("--mode", choices=MODES, default="train-fp32")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    compare(args) if args.command == "compare" else torch_bench(args)


if __name__ == "__main__":
    main()
