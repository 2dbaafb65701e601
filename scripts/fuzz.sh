#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with Clang (ASan + UBSan) in build-san/ and
# runs each one for SECONDS (default 30) on its seed corpus, tests/fuzz/corpus/TARGET
# (crashes found earlier stay there as regression inputs, so they run first). Inputs the
# fuzzer finds go to build-san/corpus/TARGET; a crashing input is saved as
# build-san/artifacts/TARGET/crash-* and fails the run.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
seconds=30
if [ $# -gt 0 ]; then
  case "$1" in
    -h|--help) usage ;;
    *[!0-9]*) ;;
    *) seconds=$1; shift ;;
  esac
fi
# Each target with the longest input worth trying (bytes): model files of a tiny model
# and their headers, a short text otherwise.
declare -A max_len=(
  [fuzz_llmc_model]=4096 [fuzz_shard]=2048 [fuzz_safetensors]=8192 [fuzz_hdf5_model]=16384
  [fuzz_tokenizer_files]=4096 [fuzz_encode]=1024 [fuzz_lambada]=2048 [fuzz_cbt]=2048
  [fuzz_examples]=2048)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_llmc_model fuzz_shard fuzz_safetensors fuzz_hdf5_model
  fuzz_tokenizer_files fuzz_encode fuzz_lambada fuzz_cbt fuzz_examples)
for t in "${targets[@]}"; do [ -n "${max_len[$t]:-}" ] || { echo "fuzz: unknown target $t" >&2; usage; }; done

dir=build-san
start=$(date +%s)
bash scripts/configure_asan.sh
cmake --build "$dir" --target "${targets[@]}" -j"$(nproc)"
echo "fuzz: built in $(($(date +%s) - start)) s; ${#targets[@]} targets x ${seconds} s"

# The targets read GPT-2's tokenizer from datasets/ (scripts/get_data.sh gpt2-tokenizer).
export GPT2_TOKENIZER_DIR="${GPT2_TOKENIZER_DIR:-$PWD/datasets/gpt2-tokenizer}"
# allocator_may_return_null: an allocation too large for the machine fails as in a normal
# build (malloc returns null, new throws) instead of ASan aborting; HDF5 sizes its
# metadata cache from the file and must see that failure to report the file as damaged.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
# Symbolized stack traces in reports (llvm-14, installed by scripts/setup.sh --test).
[ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] && export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
  log="$dir/artifacts/$t/log.txt"
  status=0
  "$dir/tests/fuzz/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=20 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t/" \
    "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  line=$(printf '%-22s %10s executions %8s/s' "$t" "${execs:-?}" "${rate:-?}")
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    line+="  FAILED (exit $status, see $log)"
    grep -E "ERROR: |SUMMARY: |runtime error|check failed|Test unit written" "$log" | head -8 >&2 || true
  fi
  summary+=("$line")
  echo "fuzz: $line"
done
echo "fuzz: summary (${seconds} s per target, $(($(date +%s) - start)) s in all)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}: fix them and add the input to tests/fuzz/corpus/TARGET" >&2
  exit 1
fi
