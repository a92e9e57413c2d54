#!/usr/bin/env bash
# session 17, call 13: the fp32 mode's GEMM against the fp32 issue peak (bench_kernels section f32, new), and the
# fp32 vs invariant end-to-end rows of issue 15 in the same call
set -u
L=/tmp/l13; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv >> $S
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
timeout 120 build-gpu/tests/bench_kernels $L/bench_f32.json f32 > $L/bench_f32.log 2>&1; note "bench_kernels f32 rc $?"
cat $L/bench_f32.log >> $S; pack
B=build-gpu/bitroll
timeout 200 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes fp32,invariant --batches 1,64 --new-tokens 128 > $L/e2e_fp32.log 2>&1; note "0.6b fp32,invariant 1,64 rc $?"
grep -E "^ *(M|shape|mode) |^(invariant|fp32) |prefill|decode" $L/e2e_fp32.log | head -30 >> $S; pack
note "end"
