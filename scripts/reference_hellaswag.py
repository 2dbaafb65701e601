#!/usr/bin/env python3
"""HellaSwag acc and acc_norm with an independent PyTorch GPT-2, optionally against `gpt2 eval hellaswag`.

Reads an llm.c float32 model file (.bin, as `gpt2 convert` or the tests write it) and
a HellaSwag JSON Lines file, and scores each example in one of two ways:
  harness  lm-evaluation-harness's `hellaswag` task: query = preprocess(activity_label
           + ": " + ctx_a + " " + ctx_b.capitalize()), choices = preprocess(ending),
           continuation " " + choice; context/continuation tokens as the harness's
           _encode_pair; acc = argmax of summed log-probabilities, acc_norm = argmax of
           that sum / len(choice) (characters, without the leading space).
  llmc     llm.c's dev/data/hellaswag.py: encode(ctx) + encode(" " + ending); acc =
           lowest summed loss, acc_norm = lowest mean loss per ending token.
Each row keeps the last max_seq + 1 tokens of context + continuation. The tokenizer is
reference_tokenizer.py's. With --gpt2, runs the program on the same files and exits 1
unless every example's log-likelihoods agree within --tol and acc and acc_norm are equal.
With --self-test, writes a random tiny model and a few examples first. Exits 77 if
PyTorch is missing.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from reference_tokenizer import Reference
except ImportError as e:  # exit 77: ctest reports the check as skipped
    print(f"reference_hellaswag: skipped, {e} (scripts/setup.sh --test installs it)")
    sys.exit(77)

EOT = 50256


def preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def load_llmc(path):
    """An llm.c float32 model file: 256 int32 header, then the tensors in llm.c's order."""
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype=np.int32)
        if header[0] != 20240326 or header[1] != 3:
            sys.exit(f"{path}: not an llm.c float32 model file (magic {header[0]}, version {header[1]})")
        maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
        data = np.frombuffer(f.read(), dtype=np.float32)
    shapes = [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)),
              ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)),
              ("attprojb", (L, C)), ("ln2w", (L, C)), ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)),
              ("fcb", (L, 4 * C)), ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
              ("lnfw", (C,)), ("lnfb", (C,))]
    p, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        p[name] = torch.tensor(data[at:at + n].reshape(shape))
        at += n
    return p, dict(maxT=maxT, V=V, L=L, NH=NH, C=C)


@torch.no_grad()
def log_probs(p, cfg, idx):
    """log softmax of the logits at every position of the token rows idx (B, T)."""
    B, T = idx.shape
    C, NH = cfg["C"], cfg["NH"]
    hs = C // NH
    x = p["wte"][idx] + p["wpe"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["L"]):
        a = F.layer_norm(x, (C,), p["ln1w"][l], p["ln1b"][l], eps=1e-5)
        qkv = a @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in qkv.split(C, dim=2))
        att = ((q @ k.transpose(-2, -1)) / hs ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, C) @ p["attprojw"][l].T + p["attprojb"][l]
        m = F.layer_norm(x, (C,), p["ln2w"][l], p["ln2b"][l], eps=1e-5)
        m = F.gelu(m @ p["fcw"][l].T + p["fcb"][l], approximate="tanh")
        x = x + m @ p["fcprojw"][l].T + p["fcprojb"][l]
    x = F.layer_norm(x, (C,), p["lnfw"], p["lnfb"], eps=1e-5)
    return F.log_softmax((x @ p["wte"][:cfg["V"]].T).double(), dim=-1)


def encode_pair(tok, context, continuation):
    """The harness's _encode_pair (an empty context is <|endoftext|>)."""
    n = len(context) - len(context.rstrip())
    if n:
        continuation, context = context[-n:] + continuation, context[:-n]
    if not context:
        return [EOT], tok.encode(continuation)
    whole, ctx = tok.encode(context + continuation), tok.encode(context)
    return ctx, whole[len(ctx):]


def render(doc, tok, variant):
    """(context tokens, continuation tokens per ending, acc_norm divisor per ending)."""
    if variant == "harness":
        query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
        choices = [preprocess(e) for e in doc["endings"]]
        pairs = [encode_pair(tok, query, " " + c) for c in choices]
        return pairs[0][0], [c for _, c in pairs], [float(len(c)) for c in choices]
    ctx = tok.encode(doc["ctx"]) or [EOT]
    conts = [tok.encode(" " + e) for e in doc["endings"]]
    return ctx, conts, [float(len(c)) for c in conts]


def score(p, cfg, ctx, conts):
    """Sum of log p of each continuation, each row cut to the last max_seq + 1 tokens."""
    out = []
    for cont in conts:
        row = (ctx + cont)[-(cfg["maxT"] + 1):]
        lp = log_probs(p, cfg, torch.tensor([row[:-1]]))[0]
        n = len(cont)
        targets = torch.tensor(row[-n:])
        out.append(lp[len(row) - 1 - n:].gather(1, targets[:, None]).sum().item())
    return out


def evaluate(model, data, tokenizer, variant, max_examples):
    p, cfg = load_llmc(model)
    tok = Reference(tokenizer)
    items = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            doc = json.loads(line)
            ctx, conts, lengths = render(doc, tok, variant)
            ll = score(p, cfg, ctx, conts)
            norm = [a / b for a, b in zip(ll, lengths)]
            label = int(doc["label"])
            pred, pred_norm = int(np.argmax(ll)), int(np.argmax(norm))
            items.append(dict(label=label, loglik=ll, pred=pred, pred_norm=pred_norm))
            if max_examples and len(items) == max_examples:
                break
    n = len(items)
    acc = sum(i["pred"] == i["label"] for i in items) / n
    acc_norm = sum(i["pred_norm"] == i["label"] for i in items) / n
    return items, acc, acc_norm


def run_gpt2(gpt2, model, data, tokenizer, variant, max_examples, tmp):
    per_example = os.path.join(tmp, "items.jsonl")
    cmd = [gpt2, "eval", "hellaswag", data, "--model", model, "--tokenizer", tokenizer,
           "--variant", variant, "--json", "--per-example", per_example]
    if max_examples:
        cmd += ["--max-examples", str(max_examples)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    with open(per_example) as f:
        return [json.loads(l) for l in f], json.loads(out.strip().splitlines()[-1])


def self_test_files(tmp):
    """A random 2-layer model (max_seq 48) and five examples in the official layout."""
    rng = np.random.default_rng(0)
    L, NH, C, V, Vp, maxT = 2, 2, 16, 50257, 50304, 48
    n = lambda *shape, std=0.02: (rng.standard_normal(shape) * std).astype(np.float32)
    wte = n(Vp, C, std=0.5)
    wte[V:] = 0
    tensors = [wte, n(maxT, C, std=0.1), 1 + n(L, C, std=0.1), n(L, C), n(L, 3 * C, C, std=0.3),
               n(L, 3 * C), n(L, C, C, std=0.3), n(L, C), 1 + n(L, C, std=0.1), n(L, C),
               n(L, 4 * C, C, std=0.3), n(L, 4 * C), n(L, C, 4 * C, std=0.3), n(L, C),
               1 + n(C, std=0.1), n(C)]
    model = os.path.join(tmp, "model.bin")
    with open(model, "wb") as f:
        header = np.zeros(256, dtype=np.int32)
        header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
        f.write(header.tobytes())
        for t in tensors:
            f.write(np.ascontiguousarray(t).tobytes())
    long_ctx = "A man stands in a kitchen." + " He keeps talking about the weather outside." * 8
    docs = [
        ("Washing dishes", "A woman stands at a sink full of plates.", "she",
         ["picks up a guitar and plays.", "throws the plates out of the window.",
          "rinses a plate under the tap.", "is sitting on a horse."], 2),
        ("Home and Garden", "[header] How to water a cactus [title] Check the soil first. [step] "
         "Push a finger  into the soil.", "",
         ["If it is dry, water it. [substeps] Use a can  with a long spout.",
          "Water it every hour [title] Cacti love water.", "Paint the pot  blue.",
          "Sing to it [step] loudly."], "1"),
        ("Playing drums", "A band plays on a stage.", "the DRUMMER",
         ["hits the cymbals hard.", "eats a sandwich.", "drives a bus home.", "swims across the lake."], 0),
        ("Talking", long_ctx, "he",
         ["stops and leaves the room.", "smiles at the camera.", "jumps into a pool.", "paints a fence."], 1),
        ("Cooking", "Someone is cooking. [step]", "",
         ["serves cr\u00eapes on a plate.", "flies away.", "reads a book.", "stirs the pot."], "3"),
    ]
    data = os.path.join(tmp, "hellaswag.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for activity, a, b, endings, label in docs:
            f.write(json.dumps({"activity_label": activity, "ctx_a": a, "ctx_b": b,
                                "ctx": a + " " + b if b else a, "endings": endings,
                                "label": label}) + "\n")
    return model, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="HellaSwag .jsonl (not with --self-test)")
    ap.add_argument("--model", help="llm.c float32 model file")
    ap.add_argument("--tokenizer", default="datasets/gpt2-tokenizer")
    ap.add_argument("--variant", choices=["harness", "llmc", "both"], default="both")
    ap.add_argument("--max-examples", type=int, default=0)
    ap.add_argument("--gpt2", help="the gpt2 program to compare with")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest |difference| of a log-likelihood")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.tokenizer, "encoder.json")):
        print(f"reference_hellaswag: skipped, no tokenizer in {args.tokenizer}")
        sys.exit(77)
    torch.set_num_threads(os.cpu_count() or 1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        model, data = self_test_files(tmp) if args.self_test else (args.model, args.data)
        if not model or not data:
            ap.error("give a data file and --model, or --self-test")
        for variant in ["harness", "llmc"] if args.variant == "both" else [args.variant]:
            items, acc, acc_norm = evaluate(model, data, args.tokenizer, variant, args.max_examples)
            line = f"{variant}: {len(items)} examples, acc {acc:.4f} acc_norm {acc_norm:.4f}"
            if args.gpt2:
                ours, summary = run_gpt2(args.gpt2, model, data, args.tokenizer, variant,
                                         args.max_examples, tmp)
                worst = max(abs(a - b) for o, r in zip(ours, items) for a, b in zip(o["loglik"], r["loglik"]))
                same = (len(ours) == len(items) and all(o["pred"] == r["pred"] and o["pred_norm"] == r["pred_norm"]
                                                        for o, r in zip(ours, items)))
                good = same and worst <= args.tol and summary["acc"] == acc and summary["acc_norm"] == acc_norm
                line += (f" | gpt2: acc {summary['acc']:.4f} acc_norm {summary['acc_norm']:.4f}, "
                         f"log-likelihoods max diff {worst:.1e} {'ok' if good else 'FAIL'}")
                ok = ok and good
            print(line)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
