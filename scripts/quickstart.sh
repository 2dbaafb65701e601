#!/usr/bin/env bash
# Sets up a Debian 12 machine, builds gpt2, and trains a small GPT-2 from scratch on TinyShakespeare.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-600}   # about 5 minutes on 2 cores with AVX-512, about 20 with AVX2 only
run=runs/quickstart
train="datasets/tinyshakespeare/tiny_shakespeare_train_*.bin"
val="datasets/tinyshakespeare/tiny_shakespeare_val_*.bin"

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
bash scripts/prepare.sh tinyshakespeare

baseline=$(/usr/bin/python3 scripts/unigram_baseline.py "$train" "$val")
echo "quickstart: unigram baseline on the val split: $baseline nats/token"

# A 4-layer, 256-channel GPT-2 (16M parameters, most of them the tied embedding),
# trained from random init with AdamW and a cosine schedule.
rm -rf "$run"
build/gpt2 train --model d6 --n-layer 4 --n-head 4 --n-embd 256 --max-seq 128 \
  --train-data "$train" --val-data "$val" --batch 8 --seq 128 --steps "$STEPS" \
  --lr 2e-3 --warmup 30 --lr-schedule cosine --lr-final-fraction 0.1 --weight-decay 0.1 \
  --val-every 100 --val-batches 10 --sample-every "$STEPS" --sample-tokens 120 \
  --sample-temperature 0.8 --out "$run"

/usr/bin/python3 scripts/plot_loss.py "$run/log.jsonl" "$run/loss.png" --baseline "$baseline"
first=$(grep -m1 val_loss "$run/log.jsonl" | sed 's/.*"val_loss":\([0-9.]*\).*/\1/')
last=$(grep val_loss "$run/log.jsonl" | tail -1 | sed 's/.*"val_loss":\([0-9.]*\).*/\1/')
echo "quickstart: val loss $first before training, $last after (unigram baseline $baseline)"
echo "quickstart: checkpoint $(ls "$run"/ckpt_*.h5 | tail -1), loss curve $run/loss.png"
