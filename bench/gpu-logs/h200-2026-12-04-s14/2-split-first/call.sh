#!/usr/bin/env bash
# temporary (session 14, call 2): not committed
set -u
L=/tmp/l2; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.ncu-rep' --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
timeout 200 build-gpu/tests/test_kern_cuda > $L/test_kern_cuda.log 2>&1; note "test_kern_cuda rc $?"
grep -E "attention decode split|^\[  (PASSED|FAILED)|FAILED|differs" $L/test_kern_cuda.log | head -30 >> $S; pack
timeout 100 build-gpu/tests/bench_kernels "" attn > $L/bench_attn.log 2>&1; note "bench_kernels attn rc $?"
grep -E "decode|copy" $L/bench_attn.log >> $S; pack
B() { timeout 150 build-gpu/bitroll bench --no-kernel-table --random-weights configs/shapes/$1.json --modes invariant --batches $2 --prompt-len 32 --new-tokens $3; }
for sh in qwen3-0.6b qwen3-8b; do
  n=2048; [ $sh = qwen3-8b ] && n=1024
  for v in split nosplit; do
    if [ $v = nosplit ]; then export BR_TMP_NOSPLIT=1; else unset BR_TMP_NOSPLIT; fi
    B $sh 1,4 $n > $L/e2e_${sh}_$v.log 2>&1; note "bench $sh batches 1,4 new $n $v rc $?"
    grep -E "^invariant" $L/e2e_${sh}_$v.log >> $S
  done
  pack
done
unset BR_TMP_NOSPLIT
(cd build-gpu && timeout 260 ctest -L gpu -E 'test_kern_cuda|gpu_fp32_cpu_equal|test_comm_nccl' --output-on-failure > $L/ctest.log 2>&1); note "ctest gpu rc $?"
grep -E "Test +#|tests passed|FAILED|ordered split|long rows" $L/ctest.log >> $S; pack
