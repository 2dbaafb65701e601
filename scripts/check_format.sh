#!/usr/bin/env bash
# Fails, naming each file and line, if clang-format (the repo's .clang-format) would change any C++ file.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h')
clang-format --dry-run -Werror "${files[@]}"
echo "check_format: ${#files[@]} files formatted as .clang-format says"
