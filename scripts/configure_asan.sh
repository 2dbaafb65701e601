#!/usr/bin/env bash
# Configures build-san/, the one sanitized build that scripts/sanitize.sh (the test suite)
# and scripts/fuzz.sh (the libFuzzer targets) share: Clang with AddressSanitizer and
# UndefinedBehaviorSanitizer, any UB report fatal, libFuzzer's coverage on every library
# (-DGPT2_FUZZ=ON), -O1 with line tables for symbolized reports, asserts on.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-san -DGPT2_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  "${launcher[@]}" >/dev/null
