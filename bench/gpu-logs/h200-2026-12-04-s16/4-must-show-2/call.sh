#!/usr/bin/env bash
# Issue 15's must-shows on the committed tree, part 2: 4,096 new tokens, top-p 0.95, the 1.7B and 8B shapes on the
# RL workload; then the GPU tests (determinism) as far as the call's time allows.
set -u
L=/tmp/l4; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
LOGS=$L/rl STAGES="long shapes" timeout 260 bash tests/gpu/bench_rl.sh > $L/bench_rl.log 2>&1; note "bench_rl long shapes rc $?"
sed -n '/==== summary/,$p' $L/bench_rl.log | cut -c1-300 >> $S; pack
timeout 80 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "^\[  (PASSED|FAILED)|FAILED" $L/test_kern_cuda.log | head -30 >> $S; pack
(cd build-gpu && timeout $((570 - SECONDS)) ctest -L gpu -E 'test_kern_cuda' --output-on-failure > $L/ctest.log 2>&1); note "ctest -L gpu rc $?"
grep -E "Test +#|tests passed|FAILED" $L/ctest.log >> $S; pack
note "end"
