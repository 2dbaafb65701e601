#!/usr/bin/env python3
"""Turns TinyShakespeare into prompt/completion JSON Lines for the fine-tuning example.

Each example is one turn of dialogue and the reply to it:
  prompt:     "ROMEO:\\n<his lines>\\n\\nJULIET:\\n"
  completion: "<her lines>"
so a model fine-tuned on them with the loss on completions learns to answer in the
next speaker's voice. The first --val-fraction of the pairs go to the validation file:
the quickstart model holds out the start of the play (its first 32,768 tokens) too, so
its fine-tuning is validated on dialogue it has not seen.

Usage: shakespeare_dialogue.py INPUT.txt TRAIN.jsonl VAL.jsonl [--val-fraction 0.1]
"""
import argparse
import json
import os
import sys


def turns(text):
    """(speaker, lines) for each blank-line-separated block "NAME:\\nlines"."""
    for block in text.split("\n\n"):
        head, _, body = block.strip("\n").partition("\n")
        if head.endswith(":") and body.strip():
            yield head[:-1], body


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("train")
    p.add_argument("val")
    p.add_argument("--val-fraction", type=float, default=0.1)
    a = p.parse_args()
    if not 0 < a.val_fraction < 1:
        sys.exit("shakespeare_dialogue: --val-fraction must be in (0, 1)")
    with open(a.input, encoding="utf-8") as f:
        t = list(turns(f.read()))
    pairs = [{"prompt": f"{s}:\n{lines}\n\n{r}:\n", "completion": reply}
             for (s, lines), (r, reply) in zip(t, t[1:])]
    n_val = max(1, int(len(pairs) * a.val_fraction))
    for path, part in ((a.train, pairs[n_val:]), (a.val, pairs[:n_val])):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for pair in part:
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path} ({len(part)} examples)")


if __name__ == "__main__":
    main()
