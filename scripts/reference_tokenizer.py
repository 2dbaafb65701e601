#!/usr/bin/env python3
"""Compares `gpt2 encode` with an independent Python GPT-2 tokenizer, file by file.

The reference follows OpenAI's GPT-2 encoder: Python's `regex` module with GPT-2's
pattern, the byte-to-unicode table, and rank-ordered BPE merging every occurrence of
the best pair. Files are read as UTF-8 with errors="replace". Exits 1 on the first
difference (printing where), 77 if the regex module is missing.
"""
import argparse
import json
import os
import subprocess
import sys
import time

try:
    import regex
except ImportError as e:
    print(f"reference_tokenizer: skipped, {e} (scripts/setup.sh --test installs python3-regex)")
    sys.exit(77)

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_table():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Reference:
    def __init__(self, folder):
        with open(os.path.join(folder, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "vocab.bpe"), encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1:] if line]
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.bytes = byte_table()
        self.pattern = regex.compile(PATTERN)
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text, allow_special=False):
        segments = text.split("<|endoftext|>") if allow_special else [text]
        ids = []
        for k, segment in enumerate(segments):
            if k:
                ids.append(50256)
            for piece in self.pattern.findall(segment):
                ids.extend(self.bpe("".join(self.bytes[b] for b in piece.encode("utf-8"))))
        return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--gpt2", default="build/gpt2")
    ap.add_argument("--tokenizer", required=True, help="folder with encoder.json and vocab.bpe")
    ap.add_argument("--allow-special", action="store_true")
    args = ap.parse_args()
    ref = Reference(args.tokenizer)
    for path in args.files:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        expected = ref.encode(text, args.allow_special)
        cmd = [args.gpt2, "encode", "--tokenizer", args.tokenizer, "--input", path]
        if args.allow_special:
            cmd.append("--allow-special")
        start = time.time()
        ours = [int(t) for t in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()]
        seconds = time.time() - start
        if ours != expected:
            at = next((i for i, (a, b) in enumerate(zip(ours, expected)) if a != b), min(len(ours), len(expected)))
            print(f"{path}: DIFFERENT at token {at}: ours {ours[at:at + 8]} vs reference {expected[at:at + 8]} "
                  f"({len(ours)} vs {len(expected)} tokens)")
            sys.exit(1)
        print(f"{path}: {len(ours)} tokens identical ({seconds:.2f} s for gpt2 encode)")


if __name__ == "__main__":
    main()
