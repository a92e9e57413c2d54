#!/usr/bin/env bash
set -u
L=/tmp/l4; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
timeout 150 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "attention decode split|^\[  (PASSED|FAILED)|FAILED|differs" $L/test_kern_cuda.log | head -30 >> $S; pack
E2E="build-gpu/bitroll bench --no-kernel-table --random-weights"
timeout 60 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,4 --prompt-len 2048 --new-tokens 256 > $L/e2e_long.log 2>&1; note "0.6b long rc $?"
grep -E "^invariant" $L/e2e_long.log >> $S
timeout 60 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1 --prompt-len 32 --new-tokens 2048 > $L/e2e_new.log 2>&1; note "0.6b new2048 rc $?"
grep -E "^invariant" $L/e2e_new.log >> $S; pack
(cd build-gpu && timeout 150 ctest -V -R gpu_rollouts > $L/ctest.log 2>&1); note "ctest gpu_rollouts rc $?"
grep -E "ordered split|long rows|tests passed|FAIL|fail" $L/ctest.log >> $S; pack
LOGS=$L/rl STAGES=rl timeout 150 bash tests/gpu/bench_rl.sh > $L/rl.log 2>&1; note "rl rc $?"
tail -6 $L/rl/summary.txt >> $S; pack
note "end"
