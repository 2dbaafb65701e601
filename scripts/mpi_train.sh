#!/usr/bin/env bash
# Data-parallel training on one or several machines with OpenMPI.
#
#   scripts/mpi_train.sh HOSTFILE RANKS_PER_NODE THREADS_PER_RANK [gpt2 train options...]
#
# HOSTFILE lists one machine per line ("node1 slots=2"; "localhost slots=2" for this
# machine alone). Each machine runs RANKS_PER_NODE ranks with THREADS_PER_RANK OpenMP
# threads each, bound to their own cores: choose them so that ranks x threads = the
# machine's physical cores. Every machine needs the same build at the same path
# (build/gpt2 here) and the training data at the path the options give; rank 0 alone
# reads the starting model or checkpoint and writes --out, so those need to exist only
# on the first host.
#
# Example (2 machines x 2 ranks x 8 threads, gpt2 124M, 0.5M tokens per step):
#   scripts/mpi_train.sh hosts.txt 2 8 --model gpt2 --train-data 'data/fineweb_train_*.bin' \
#       --batch 8 --seq 1024 --total-batch-tokens 524288 --zero 1 --steps 5000 --out runs/gpt2
set -euo pipefail

if [[ $# -lt 3 ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
hostfile=$1 ranks_per_node=$2 threads=$3
shift 3
[[ -f $hostfile ]] || { echo "mpi_train.sh: $hostfile: no such hostfile" >&2; exit 1; }
nodes=$(grep -cv '^\s*\(#\|$\)' "$hostfile")
root=$(cd "$(dirname "$0")/.." && pwd)

# --map-by ppr:R:node:PE=T places R ranks per node, each bound to T cores; -x passes
# the thread count to every rank. As root (containers), OpenMPI wants to be told.
extra=()
[[ $(id -u) == 0 ]] && extra+=(--allow-run-as-root)
# Ctrl-C or SIGTERM on this script stops the run cleanly: it sends SIGUSR1 to mpirun,
# which forwards it to every rank; the ranks finish the step, rank 0 writes a
# checkpoint, and all exit 0. (SIGINT or SIGTERM sent to mpirun itself makes OpenMPI
# kill the ranks odls_base_sigkill_timeout seconds later, 1 by default, raised here.)
# mpirun runs in its own process group (set -m), so a terminal's Ctrl-C reaches only
# this script.
set -m
set -x
mpirun "${extra[@]}" --hostfile "$hostfile" -np $((nodes * ranks_per_node)) \
  --map-by "ppr:${ranks_per_node}:node:PE=${threads}" --bind-to core \
  --mca odls_base_sigkill_timeout 120 \
  -x OMP_NUM_THREADS="$threads" \
  "$root/build/gpt2" train "$@" &
set +x
pid=$!
trap 'kill -USR1 "$pid" 2>/dev/null || true' INT TERM
# wait returns early when a trapped signal arrives; go on waiting until mpirun is gone.
# (kill -0 still finds mpirun once it has exited, until wait has collected its status.)
while :; do
  if wait "$pid"; then status=0; else status=$?; fi
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
