#!/usr/bin/env bash
# One command for a machine with two GPUs or more (device kind nvidia-h200-x2): build (tests/gpu/run.sh's build),
# the GPU tests with one rank per GPU (ctest -L gpu: test_comm_nccl over NCCL on every GPU, gpu_rollouts' -np 2 and
# --tp 2 runs on two GPUs through NCCL), the data-parallel benchmark (bench/bench_dp.sh: 512 prompts x 256 tokens,
# 1 rank vs one per GPU, rollouts compared bitwise) and the weights broadcast benchmark (bench_bcast, Qwen3-8B shape);
# logs under $LOGS (default $OUT), summary last. NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
# usage: LOGS=/tmp/gpulogs bash tests/gpu/run_multi.sh      (repository root; carry .deps as for run.sh)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${LOGS:-${OUT:-$ROOT/gpu-out}}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SECONDS=0
# GPUs this process may use: CUDA_VISIBLE_DEVICES's entries when it is set, else nvidia-smi's list
visible_gpus() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[^ ]' || true
    else nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true; fi
}
NGPU=$(visible_gpus)
echo "[run_multi ${SECONDS}s] $NGPU GPU(s) visible"
[ "${NGPU:-0}" -ge 2 ] || echo "run_multi: fewer than 2 GPUs: the multi-GPU parts run on shared GPUs or not at all"
BUILD_ONLY=1 LOGS="$OUT" bash "$ROOT/tests/gpu/run.sh" >"$OUT/build.out" 2>&1 || { tail -20 "$OUT/build.out"; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
BUILD=$ROOT/build-gpu
echo "[run_multi ${SECONDS}s] built"
status=0
(cd "$BUILD" && ctest -L gpu -V --output-on-failure --timeout 900) >"$OUT/ctest_gpu.log" 2>&1 || status=1
echo "[run_multi ${SECONDS}s] gpu tests done"
(cd "$ROOT" && LOGS="$OUT/dp" JSON="$OUT/bench_dp.json" bash bench/bench_dp.sh "$BUILD") >"$OUT/bench_dp.log" 2>&1 || status=1
echo "[run_multi ${SECONDS}s] dp bench done"
np=$(( NGPU > 1 ? NGPU : 1 ))
(cd "$ROOT" && mpirun --allow-run-as-root -np "$np" "$BUILD/tests/bench_bcast" --shape configs/shapes/qwen3-8b.json \
    --json "$OUT/bench_bcast.json") >"$OUT/bench_bcast.log" 2>&1 || status=1
echo "[run_multi ${SECONDS}s] bcast bench done"
echo
echo "================ multi-GPU summary ================"
echo "GPUs:         $NGPU ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
echo "ctest gpu:    $(grep -E 'tests passed|tests failed' "$OUT/ctest_gpu.log" | tail -1)"
grep -E '^\s+[0-9]+/[0-9]+ Test' "$OUT/ctest_gpu.log" | sed 's/^/              /'
echo "backends:     $(grep -oE '(broadcast from rank 0|all-gathered) with [a-z0-9. -]+' "$OUT/ctest_gpu.log" | sort -u | tr '\n' ';')"
echo "data parallel (bench/bench_dp.sh):"
sed 's/^/  /' "$OUT/bench_dp.log"
echo "weights broadcast (bench_bcast, Qwen3-8B shape):"
tail -12 "$OUT/bench_bcast.log" | sed 's/^/  /'
[ $status = 0 ] && echo "run_multi: every step passed" || echo "run_multi: a step FAILED (see the logs above)"
exit $status
