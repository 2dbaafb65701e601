#!/usr/bin/env bash
# Sets up a Debian 12 machine, builds gpt2 and runs the main job (for now: the gradient check).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
./build/gpt2 gradcheck
