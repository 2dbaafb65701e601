#!/usr/bin/env bash
# Sets up a Debian 12 machine, builds gpt2 and runs every test (README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test
bash scripts/get_data.sh all  # the tokenizer and the corpora its tests compare on
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
