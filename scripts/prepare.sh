#!/usr/bin/env bash
# Tokenizes a data set (fetched by get_data.sh) into llm.c token shards under datasets/NAME.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { echo "usage: $0 tinyshakespeare|wikitext2|ptb" >&2; exit 2; }
gpt2=${GPT2:-build/gpt2}
[ -x "$gpt2" ] || { echo "prepare: $gpt2 not found; build first (see README.md)" >&2; exit 1; }
tok=(--tokenizer datasets/gpt2-tokenizer)
bash scripts/get_data.sh gpt2-tokenizer "$1"

case "$1" in
  tinyshakespeare)
    # As llm.c's tinyshakespeare.py: <|endoftext|> before every blank-line-separated
    # block; the first 32,768 tokens are the validation split, the rest train.
    "$gpt2" tokenize "${tok[@]}" --input datasets/tinyshakespeare/input.txt \
      --output datasets/tinyshakespeare/tiny_shakespeare \
      --doc-split blank-line --eot-between-docs --val-tokens 32768 ;;
  wikitext2)
    for split in valid test; do
      "$gpt2" tokenize "${tok[@]}" --input "datasets/wikitext2/wiki.$split.tokens" \
        --output "datasets/wikitext2/wiki.$split.bin" --eot-between-docs
    done ;;
  ptb)
    for split in valid test; do
      "$gpt2" tokenize "${tok[@]}" --input "datasets/ptb/ptb.$split.txt" \
        --output "datasets/ptb/ptb.$split.bin" --eot-between-docs
    done ;;
  *) echo "prepare: unknown data set '$1' (tinyshakespeare, wikitext2, ptb)" >&2; exit 2 ;;
esac
