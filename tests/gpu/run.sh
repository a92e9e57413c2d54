#!/usr/bin/env bash
# One script for the GPU machine: unpack the carried .deb files (cmocka, cJSON, xxHash, PCRE2) into /tmp/deps,
# configure with the CUDA backend ON, build, run the GPU tests (ctest -L gpu) and the unit tests, run the kernel
# benchmark, keep logs under $OUT, print a summary last.
# Usage (from the repository root): bash tests/gpu/run.sh   [DEPS_DIR defaults to ../.deps or .deps]
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# Logs go to $LOGS (default $OUT, else ./gpu-out); the device tool returns at most 8 files, so wrap the call as
#   LOGS=/tmp/gpulogs timeout 570 bash tests/gpu/run.sh; tar czf $OUT/logs.tgz -C /tmp/gpulogs .
OUT=${LOGS:-${OUT:-$ROOT/gpu-out}}
mkdir -p "$OUT"
SECONDS=0
stage() { echo "[run.sh ${SECONDS}s] $*"; }
DEPS_DIR=${DEPS_DIR:-}
if [ -z "$DEPS_DIR" ]; then
  for d in "$ROOT/../.deps" "$ROOT/.deps"; do [ -d "$d" ] && DEPS_DIR=$d && break; done
fi
PREFIX=/tmp/deps
rm -rf "$PREFIX" && mkdir -p "$PREFIX"
if [ -n "$DEPS_DIR" ]; then
  for f in "$DEPS_DIR"/*.deb; do dpkg -x "$f" "$PREFIX"; done
fi
export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$OUT/gpu.txt"

BUILD=$ROOT/build-gpu
JOBS=$(nproc)
cfg() {
  cmake -S "$ROOT" -B "$BUILD" -DBITROLL_CUDA=ON -DBITROLL_WERROR=${WERROR:-OFF} -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$PREFIX/usr" "$@"
}
# Ubuntu's serial HDF5 lives under hdf5/serial; FindHDF5 usually finds it through h5cc, the hints are the fallback.
if ! cfg >"$OUT/configure.log" 2>&1; then
  HS=/usr/lib/x86_64-linux-gnu/hdf5/serial
  cfg -DHDF5_ROOT=$HS -DHDF5_C_INCLUDE_DIR=/usr/include/hdf5/serial -DHDF5_C_LIBRARY=$HS/libhdf5.so \
      >>"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; echo "configure FAILED"; exit 1; }
fi
cmake --build "$BUILD" -j "$JOBS" -- -k >"$OUT/build.log" 2>&1
BUILD_RC=$?
grep -E "error|warning" "$OUT/build.log" | head -20
for t in bitroll bitroll_shared test_kern_cuda test_engine_kernels test_engine_logits test_api bench_kernels; do
  cmake --build "$BUILD" --target $t -j "$JOBS" >>"$OUT/build.log" 2>&1 || { echo "build of $t FAILED"; tail -30 "$OUT/build.log"; exit 1; }
done

stage "build done"
[ "${BUILD_ONLY:-0}" = 1 ] && exit $BUILD_RC
(cd "$BUILD" && ctest -L gpu --output-on-failure --timeout 900) 2>&1 | tee "$OUT/ctest_gpu.log"
# the NCCL layer's own report (one rank per visible GPU)
(cd "$BUILD" && ctest -R test_comm_nccl -V --timeout 600) >"$OUT/comm_nccl.log" 2>&1
stage "gpu tests done"
if [ "${RUN_UNIT:-0}" = 1 ]; then
  (cd "$BUILD" && ctest -L unit --output-on-failure --timeout 600) >"$OUT/ctest_unit.log" 2>&1
fi
# The GPU test's own report (max errors, invariance counts): ctest shows it only on failure.
"$BUILD/tests/test_kern_cuda" >"$OUT/test_kern_cuda.log" 2>&1
"$BUILD/tests/bench_kernels" "$OUT/bench_kernels.json" 2>&1 | tee "$OUT/bench.log"
# EXTRA=1 adds the no-graphs comparison, the batch-64 profile and gpu_rollouts without graphs
stage "kernel bench done"
# end to end: Qwen3-0.6B shape, every kernel mode, batches 1/64/256, flip experiment; then the same with CUDA
# graphs for decode steps (on by default) compared with BITROLL_CUDA_GRAPHS=0, and the GPU end-to-end test without them
(cd "$ROOT" && "$BUILD/bitroll" bench --no-kernel-table --batches 1,64,256 --new-tokens 128 --flip --json "$OUT/bench_e2e.json") 2>&1 | tee "$OUT/bench_e2e.log"
[ "${EXTRA:-0}" = 1 ] && (cd "$ROOT" && BITROLL_CUDA_GRAPHS=0 "$BUILD/bitroll" bench --no-kernel-table --modes invariant \
    --batches 1,64,256 --new-tokens 128 --json "$OUT/bench_e2e_nographs.json") 2>&1 | tee "$OUT/bench_e2e_nographs.log"
# where a decode step's time goes (events between phases, graphs off): stderr of the engine at exit
(cd "$ROOT" && BITROLL_CUDA_PROFILE=1 "$BUILD/bitroll" bench --no-kernel-table --modes invariant --batches 1 --new-tokens 64 \
    --json "$OUT/profile_b1.json") >"$OUT/profile_b1.log" 2>&1
[ "${EXTRA:-0}" = 1 ] && (cd "$ROOT" && BITROLL_CUDA_PROFILE=1 "$BUILD/bitroll" bench --no-kernel-table --modes invariant --batches 64 \
    --new-tokens 64 --json "$OUT/profile_b64.json") >"$OUT/profile_b64.log" 2>&1
stage "e2e benches done"
[ "${EXTRA:-0}" = 1 ] && (cd "$BUILD" && BITROLL_CUDA_GRAPHS=0 ctest -R gpu_rollouts --output-on-failure --timeout 900) \
    >"$OUT/ctest_graphs.log" 2>&1

echo
echo "================ summary ================"
echo "device:       $(sed -n 2p "$OUT/gpu.txt")"
echo "full build:   rc=$BUILD_RC (targets that failed: $(grep -c 'Error [0-9]' "$OUT/build.log" || true) make errors; see build.log)"
echo "ctest gpu:    $(grep -E 'tests passed|tests failed' "$OUT/ctest_gpu.log" | tail -1)"
grep -E '^\s+[0-9]+/[0-9]+ Test' "$OUT/ctest_gpu.log" | sed 's/^/              /'
echo "test_comm_nccl: $(grep -cE '\[       OK \]' "$OUT/comm_nccl.log") cmocka tests OK; $(grep -E 'GB/s|ranks' "$OUT/comm_nccl.log" | head -3 | tr '\n' ' ')"
echo "test_kern_cuda report:"
grep -E "gemm|rowpar|rmsnorm|layernorm|rope|swiglu|gelu|add|cast|embed|attn|logsoftmax|logprob|argmax|PASSED|FAILED|OK" "$OUT/test_kern_cuda.log" | sed 's/^/  /'
[ -f "$OUT/ctest_unit.log" ] && echo "ctest unit:   $(grep -E 'tests passed|tests failed' "$OUT/ctest_unit.log" | tail -1)"
[ -f "$OUT/ctest_unit.log" ] && grep -E '\*\*\*|Not Run|Failed' "$OUT/ctest_unit.log" | sed 's/^/              /' | head -10
[ -f "$OUT/ctest_graphs.log" ] && echo "no graphs:    $(grep -E 'tests passed|tests failed' "$OUT/ctest_graphs.log" | tail -1) (gpu_rollouts with BITROLL_CUDA_GRAPHS=0)"
echo "bench:"
sed -n '/^GEMM (bf16/,$p' "$OUT/bench.log"
echo "end to end (bitroll bench):"
sed -n '/^copy bandwidth/,$p' "$OUT/bench_e2e.log"
if [ -s "$OUT/bench_e2e_nographs.log" ]; then
  echo "end to end without CUDA graphs:"
  sed -n '/^mode/,$p' "$OUT/bench_e2e_nographs.log"
fi
echo "profile (invariant, 64 new tokens):"
grep -A14 "cuda profile, decode" "$OUT/profile_b1.log" | grep -v "^--"
[ -f "$OUT/profile_b64.log" ] && grep -A14 "cuda profile, decode" "$OUT/profile_b64.log" | grep -v "^--"
true
