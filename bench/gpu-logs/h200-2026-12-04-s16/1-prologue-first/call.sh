#!/usr/bin/env bash
set -u
L=/tmp/l1; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
BR_TEST_FILTER=test_gemm_prologue timeout 120 build-gpu/tests/test_kern_cuda > $L/test_prologue.log 2>&1; note "test_gemm_prologue rc $?"
grep -E "norm\+gemm n=|swiglu\+rowpar N=.*: |DIFFERS|difference|outside|WANTED|PASSED|FAILED" $L/test_prologue.log | grep -v " 0 outside" | head -60 >> $S; pack
E2E="build-gpu/bitroll bench --no-kernel-table --random-weights"
run_e2e() { # tag
  timeout 90 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,2,4,16 --new-tokens 64 > $L/e2e_06_$1.log 2>&1; note "0.6b $1 rc $?"
  grep -E "^invariant|copy" $L/e2e_06_$1.log | head -8 >> $S
  timeout 90 $E2E configs/shapes/qwen3-8b.json --modes invariant --batches 1,4 --new-tokens 64 > $L/e2e_8b_$1.log 2>&1; note "8b $1 rc $?"
  grep -E "^invariant" $L/e2e_8b_$1.log >> $S; pack
}
BITROLL_GEMM_PROLOGUE=1 run_e2e on1
BITROLL_GEMM_PROLOGUE=0 run_e2e off1
BITROLL_GEMM_PROLOGUE=1 run_e2e on2
BITROLL_GEMM_PROLOGUE=0 run_e2e off2
timeout 150 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "^\[  (PASSED|FAILED)|FAILED" $L/test_kern_cuda.log | head -30 >> $S; pack
(cd build-gpu && timeout 120 ctest -R gpu_rollouts --output-on-failure > $L/ctest_rollouts.log 2>&1); note "gpu_rollouts rc $?"
grep -E "Test +#|tests passed|FAILED" $L/ctest_rollouts.log >> $S; pack
note "end"
