#!/usr/bin/env bash
# Runs a multi-GPU test program under mpirun with one rank per visible GPU; with no GPU visible (or no CUDA build)
# one rank, and the program reports its tests skipped itself. NCCL_NVLS_ENABLE=0: no NVLink SHARP multicast here.
# usage: mpi_gpus.sh EXE [args]          the program's tests on N ranks, N = the GPUs EXE --count-gpus sees
#                                        (BITROLL_TEST_NP overrides N)
#        mpi_gpus.sh --too-many EXE      N + 1 ranks with --init-only: must fail, naming the rank that has no GPU
#                                        ("local rank N but only N GPUs visible"); exit 77 (skipped) when N = 0
set -uo pipefail
mode=suite
if [ "${1:-}" = --too-many ]; then
    mode=too_many
    shift
fi
exe=$1
shift
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader} OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
n=$("$exe" --count-gpus 2>/dev/null | tail -n 1)
case "$n" in '' | *[!0-9]*) n=0 ;; esac # a build without CUDA prints its skip report instead
if [ -n "${BITROLL_TEST_NP:-}" ]; then n=$BITROLL_TEST_NP; fi

if [ "$mode" = suite ]; then
    np=$((n > 0 ? n : 1))
    echo "mpi_gpus.sh: $n GPU(s) visible: mpirun -np $np $exe $*"
    exec mpirun --allow-run-as-root --oversubscribe -np "$np" "$exe" "$@"
fi

if [ "$n" = 0 ]; then
    echo "no CUDA device visible: skipped"
    exit 77
fi
np=$((n + 1))
echo "mpi_gpus.sh: $n GPU(s) visible: mpirun -np $np $exe --init-only (must fail)"
code=0
out=$(mpirun --allow-run-as-root --oversubscribe -np "$np" "$exe" --init-only 2>&1) || code=$?
echo "$out"
if [ "$code" = 0 ]; then
    echo "FAIL: $np ranks on $n GPUs: comm_nccl_init succeeded"
    exit 1
fi
if ! grep -q "\[rank $n\] rank $n on node .*: local rank $n but only $n GPUs\? visible" <<<"$out"; then
    echo "FAIL: the error does not name rank $n, the one without a GPU"
    exit 1
fi
echo "PASS"
