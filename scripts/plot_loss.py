#!/usr/bin/env python3
"""Plots the training and validation loss of a `gpt2 train` JSON-lines log to a PNG."""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log", help="log.jsonl written by gpt2 train")
    ap.add_argument("png", help="image to write")
    ap.add_argument("--baseline", type=float, help="draw a horizontal line at this loss (e.g. unigram)")
    args = ap.parse_args()
    train, val = [], []
    with open(args.log) as f:
        for line in f:
            entry = json.loads(line)
            if "loss" in entry:
                train.append((entry["step"], entry["loss"]))
            if "val_loss" in entry:
                val.append((entry["step"], entry["val_loss"]))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    if args.baseline:
        ax.axhline(args.baseline, color="gray", linestyle="--", label=f"unigram baseline {args.baseline:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(args.log)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"plot_loss: wrote {args.png}")


if __name__ == "__main__":
    main()
