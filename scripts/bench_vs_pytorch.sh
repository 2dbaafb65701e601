#!/usr/bin/env bash
# Our gpt2 bench against PyTorch 1.13 training GPT-2 124M on this CPU, side by side:
# training steps and forward passes, fp32 and bf16, tokens/s and the ratios ours/PyTorch
# and bf16/fp32. How PyTorch is set up for speed: scripts/bench_vs_pytorch.py's header.
#
#   scripts/bench_vs_pytorch.sh [GPT2_BINARY] [--configs 4x256,1x1024] [--modes
#       train-fp32,train-bf16,fwd-fp32,fwd-bf16] [--steps 5] [--warmup 2] [--threads N]
#       [--rounds 1] [--quick] [--json FILE]
#
# GPT2_BINARY defaults to build/gpt2 beside this script; threads default to the CPUs
# (both programs get the same, via OMP_NUM_THREADS); --rounds N repeats everything N
# times, interleaved, and reports medians and each ratio's range (ratios are taken within
# a round); --quick is a smoke run (1 warm-up and 2 timed steps). Needs python3-torch
# (scripts/setup.sh --test).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gpt2="$(dirname "$here")/build/gpt2"
if [[ $# -gt 0 && $1 != -* ]]; then
  gpt2=$1
  shift
fi
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "bench_vs_pytorch: /usr/bin/python3 has no torch (scripts/setup.sh --test installs it)" >&2
  exit 1
fi
exec /usr/bin/python3 "$here/bench_vs_pytorch.py" compare --gpt2 "$gpt2" "$@"
