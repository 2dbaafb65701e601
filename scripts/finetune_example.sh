#!/usr/bin/env bash
# README's fine-tuning example: a model file fine-tuned on prompt/completion pairs with
# the loss on the completions only, the best checkpoint kept, evaluated, exported and
# sampled. The data: TinyShakespeare's turns of dialogue, each reply a completion of the
# turn before it (scripts/shakespeare_dialogue.py). The model: MODEL if set (any .bin,
# .h5 or .safetensors with at least 128 positions), else the quickstart's newest
# checkpoint, trained first if there is none (scripts/quickstart.sh).
# Usage: [MODEL=FILE] scripts/finetune_example.sh
set -euo pipefail
cd "$(dirname "$0")/.."

d=datasets/dialogue
out=runs/dialogue
if [ -z "${MODEL:-}" ]; then
  ls runs/quickstart/ckpt_*.h5 >/dev/null 2>&1 || bash scripts/quickstart.sh
  MODEL=$(ls runs/quickstart/ckpt_*.h5 | tail -1)
fi
[ -x build/gpt2 ] || { bash scripts/setup.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)"; }
bash scripts/get_data.sh tinyshakespeare gpt2-tokenizer >/dev/null

mkdir -p "$d"
/usr/bin/python3 scripts/shakespeare_dialogue.py datasets/tinyshakespeare/input.txt \
  "$d/train.jsonl" "$d/val.jsonl"
build/gpt2 tokenize --input "$d/train.jsonl" --output "$d/train.bin"
build/gpt2 tokenize --input "$d/val.jsonl" --output "$d/val.bin"

loss() { build/gpt2 eval loss --model "$1" --data "$d/val.bin" --batch 8 --seq 128 | awk '{print $2}'; }
before=$(loss "$MODEL")
echo "finetune: $MODEL: val loss on the replies $before before fine-tuning"

start=$SECONDS
build/gpt2 train --model "$MODEL" --train-data "$d/train.bin" --val-data "$d/val.bin" \
  --batch 8 --seq 128 --epochs 1 --lr 3e-4 --lr-schedule linear --warmup 20 \
  --weight-decay 0.1 --val-every 50 --val-batches 20 --keep-best --early-stop 4 \
  --out "$out" --overwrite
seconds=$((SECONDS - start))

after=$(loss "$out/best.h5")
build/gpt2 convert "$out/best.h5" "$out/dialogue.safetensors"
echo "finetune: sample from $out/best.h5:"
build/gpt2 sample --model "$out/best.h5" --prompt $'ROMEO:\nWhat say you, lady? Will you walk with me?\n\nJULIET:\n' \
  --max-tokens 60 --temperature 0.8 --top-k 40 --stop-at-eot
echo
echo "finetune: val loss on the replies $before before, $after after ($out/best.h5); training took ${seconds} s"
