#!/usr/bin/env bash
set -u
L=/tmp/l2; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
timeout 150 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "attention decode split|^\[  (PASSED|FAILED)|FAILED|differs" $L/test_kern_cuda.log | head -30 >> $S; pack
timeout 90 build-gpu/tests/bench_kernels "" attn,splitsweep > $L/bench_attn_new.log 2>&1; note "bench_kernels attn new rc $?"
grep -E "B=1 |B=4 |S=|engine" $L/bench_attn_new.log | grep -v "f32\|prefill" >> $S; pack
E2E="build-gpu/bitroll bench --no-kernel-table --random-weights"
run_e2e() { # tag
  timeout 60 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,4 --prompt-len 2048 --new-tokens 256 > $L/e2e_long_$1.log 2>&1; note "0.6b long $1 rc $?"
  grep -E "^invariant" $L/e2e_long_$1.log >> $S
  timeout 60 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1 --prompt-len 32 --new-tokens 2048 > $L/e2e_new_$1.log 2>&1; note "0.6b new2048 $1 rc $?"
  grep -E "^invariant" $L/e2e_new_$1.log >> $S
  timeout 90 $E2E configs/shapes/qwen3-8b.json --modes invariant --batches 1 --prompt-len 4096 --new-tokens 128 > $L/e2e_8b_$1.log 2>&1; note "8b long $1 rc $?"
  grep -E "^invariant" $L/e2e_8b_$1.log >> $S; pack
}
BR_TMP_SPLIT_MIN=8 run_e2e min8
BR_TMP_SPLIT_MIN=4 run_e2e min4
BR_TMP_SPLIT_MIN=2 run_e2e min2
(cd build-gpu && BR_TMP_SPLIT_MIN=4 timeout 150 ctest -V -R gpu_rollouts > $L/ctest.log 2>&1); note "ctest gpu_rollouts (min 4) rc $?"
grep -E "ordered split|long rows|tests passed|FAIL|fail" $L/ctest.log >> $S; pack
BR_TMP_SPLIT_MIN=4 BITROLL_LIB=build-gpu/libbitroll.so timeout 100 python3 bench/exp/step_timeline.py configs/shapes/qwen3-0.6b.json 1 200 2048 > $L/timeline_min4.log 2>&1; note "timeline min4 rc $?"
grep -v Warn $L/timeline_min4.log | grep -v _warn | head -12 >> $S; pack
# the fourteenth session's attention.cu (three launches), rebuilt in place: the same rows
cp kernels/cuda/attention.cu /tmp/new_attention.cu; cp tests/gpu/s15_old_attention.cu.txt kernels/cuda/attention.cu
cmake --build build-gpu --target bitroll -j 16 > $L/build_old.log 2>&1; note "build old rc $?"
run_e2e old
cp /tmp/new_attention.cu kernels/cuda/attention.cu
note "end"
