#!/usr/bin/env bash
# Downloads OpenAI's GPT-2 weights from Hugging Face (online machines only) into models/SIZE/.
set -euo pipefail
cd "$(dirname "$0")/.."

size=${1:-gpt2}
case "$size" in
  gpt2|gpt2-medium|gpt2-large|gpt2-xl) ;;
  *) echo "usage: $0 gpt2|gpt2-medium|gpt2-large|gpt2-xl" >&2; exit 2 ;;
esac
dest=models/$size
mkdir -p "$dest"
base=https://huggingface.co/openai-community/$size/resolve/main
for f in config.json model.safetensors; do
  if [ -s "$dest/$f" ]; then echo "download_gpt2: $dest/$f is present"; continue; fi
  echo "download_gpt2: $base/$f"
  curl --fail --location --silent --show-error --retry 3 -o "$dest/$f.tmp" "$base/$f"
  mv "$dest/$f.tmp" "$dest/$f"
done
build/gpt2 info "$dest/model.safetensors"
echo "download_gpt2: use --model $dest/model.safetensors, or: build/gpt2 convert $dest/model.safetensors $size.bin"
