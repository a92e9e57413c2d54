#!/usr/bin/env bash
# temporary (session 14, call 4): not committed
set -u
L=/tmp/l4; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.ncu-rep' --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
timeout 200 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "attention decode split|^\[  (PASSED|FAILED)|FAILED|differs" $L/test_kern_cuda.log | head -30 >> $S; pack
timeout 100 build-gpu/tests/bench_kernels "" attn > $L/bench_attn.log 2>&1; note "bench_kernels attn rc $?"
grep -E "B=1 |B=4 " $L/bench_attn.log >> $S; pack
B() { timeout 150 build-gpu/bitroll bench --no-kernel-table --random-weights configs/shapes/$1.json --modes invariant --batches $2 --prompt-len $3 --new-tokens $4; }
for v in split nosplit split nosplit; do
  if [ $v = nosplit ]; then export BR_TMP_NOSPLIT=1; else unset BR_TMP_NOSPLIT; fi
  B qwen3-0.6b 1,4 2048 256 > $L/e2e_long_$v.log 2>&1; note "bench 0.6b prompt 2048 new 256 $v rc $?"
  grep -E "^invariant" $L/e2e_long_$v.log >> $S
  B qwen3-0.6b 1 32 2048 > $L/e2e_new_$v.log 2>&1; note "bench 0.6b prompt 32 new 2048 $v rc $?"
  grep -E "^invariant" $L/e2e_new_$v.log >> $S
  pack
done
unset BR_TMP_NOSPLIT
(cd build-gpu && timeout 150 ctest -V -R gpu_rollouts > $L/ctest.log 2>&1); note "ctest gpu_rollouts rc $?"
grep -E "ordered split|long rows|tests passed|FAIL|fail" $L/ctest.log >> $S; pack
for v in split nosplit; do
  if [ $v = nosplit ]; then export BR_TMP_NOSPLIT=1; else unset BR_TMP_NOSPLIT; fi
  BITROLL_LIB=build-gpu/libbitroll.so timeout 150 python3 bench/exp/step_timeline.py configs/shapes/qwen3-0.6b.json 1 200 2048 > $L/timeline_$v.log 2>&1; note "timeline 0.6b prompt 2048 $v rc $?"
  grep -v Warn $L/timeline_$v.log | grep -v _warn | head -30 >> $S; pack
done
