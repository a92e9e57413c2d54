#!/usr/bin/env bash
# session 17, call 14: which fp32 GEMM kernel for 1 <= M <= 16 -- gemm_f32_small (today's choice) or gemm_f32_tiled
# -- through a temporary switch BR_TMP_F32_MAXM (the largest M the small kernel takes; 0: the tiled kernel at every
# M). The tests with the tiled kernel at every M: test_kern_cuda (its f32 GEMM tests then run the tiled kernel at
# M = 1..16 against the CPU) and gpu_fp32_cpu_equal (the fp32 engine == the CPU engine).
set -u
L=/tmp/l14; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
for m in 16 0; do
  BR_TMP_F32_MAXM=$m timeout 120 build-gpu/tests/bench_kernels $L/bench_f32_$m.json f32 > $L/bench_f32_$m.log 2>&1; note "bench_kernels f32 maxm $m rc $?"
  grep -E "^[0-9]+x" $L/bench_f32_$m.log | sed "s/^/maxm=$m /" >> $S
done
pack
B=build-gpu/bitroll
for m in 16 0; do
  BR_TMP_F32_MAXM=$m timeout 120 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes fp32 --batches 1,4,8,16 --new-tokens 64 > $L/e2e_fp32_$m.log 2>&1; note "e2e fp32 maxm $m rc $?"
  grep -E "^fp32 " $L/e2e_fp32_$m.log | sed "s/^/maxm=$m /" >> $S
done
timeout 60 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,4,8,16 --new-tokens 64 > $L/e2e_inv.log 2>&1; note "e2e invariant rc $?"
grep -E "^invariant " $L/e2e_inv.log >> $S; pack
export BR_TMP_F32_MAXM=0
timeout 120 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda (tiled at every M) rc $?"
grep -E "PASSED|FAILED|\[  ERROR|tests" $L/test_kern_cuda.log | tail -5 >> $S; pack
(cd build-gpu && timeout 200 ctest -R gpu_fp32_cpu_equal --output-on-failure > $L/ctest_fp32.log 2>&1); note "gpu_fp32_cpu_equal (tiled at every M) rc $?"
tail -5 $L/ctest_fp32.log >> $S; pack
note "end"
