#!/usr/bin/env bash
# Installs the Debian packages needed to build and run gpt2 (add --test for the test extras).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libblis-openmp-dev      # CBLAS (default); the OpenMP builds share our thread pool
  libopenblas-openmp-dev  # CBLAS with -DGPT2_BLAS=openblas
  libdnnl-dev             # oneDNN: the float matrix products (-DGPT2_MATMUL=cblas goes without)
  libhdf5-dev hdf5-tools  # model files and checkpoints; h5ls
  openmpi-bin libopenmpi-dev  # data parallelism: mpirun and MPI
  libcli11-dev            # command-line parsing
  libpcre2-dev            # the tokenizer's Unicode-aware pattern
  nlohmann-json3-dev      # encoder.json, training options in checkpoints
  python3 python3-numpy python3-matplotlib  # the quickstart's baseline and loss plot
  doctest-dev             # unit tests
  curl ca-certificates unzip  # scripts/get_data.sh downloads when ../shared/data is absent
)
# The tests also read our HDF5 files with h5py, compare the model with PyTorch and the
# tokenizer with a Python transcription of OpenAI's encoder (which needs regex).
# CI also checks the formatting with clang-format, and builds everything with Clang's
# ASan, UBSan and libFuzzer (scripts/configure_asan.sh) to run the tests under the
# sanitizers (scripts/sanitize.sh) and fuzz the parsers (scripts/fuzz.sh): the runtimes
# are in libclang-rt-14-dev, Clang's OpenMP in libomp-dev, the symbolizer for reports in
# llvm-14.
test_packages=(python3-h5py python3-torch python3-regex clang-format
  clang libclang-rt-14-dev libomp-dev llvm-14)

want=("${packages[@]}")
for arg in "$@"; do
  case "$arg" in
    --test) want+=("${test_packages[@]}") ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#want[@]} packages already installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
