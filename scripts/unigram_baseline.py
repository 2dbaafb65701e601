#!/usr/bin/env python3
"""Cross-entropy of a val shard under the train shards' unigram distribution (add-one smoothed)."""
import glob
import sys

import numpy as np


def tokens(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype=np.int32)
        if header[0] != 20240520:
            sys.exit(f"{path}: not a token shard")
        return np.frombuffer(f.read(), dtype=np.uint16)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: unigram_baseline.py 'TRAIN_GLOB' 'VAL_GLOB'")
    train = np.concatenate([tokens(p) for p in sorted(glob.glob(sys.argv[1]))])
    val = np.concatenate([tokens(p) for p in sorted(glob.glob(sys.argv[2]))])
    counts = np.bincount(train, minlength=50257).astype(np.float64) + 1
    p = counts / counts.sum()
    print(f"{-np.log(p[val]).mean():.4f}")


if __name__ == "__main__":
    main()
