#!/usr/bin/env bash
# temporary (session 14, call 1): not committed
set -u
L=/tmp/l1; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.ncu-rep' --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
/usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a bench/exp/launch_floor.cu -o /tmp/lf > $L/lf_build.log 2>&1 && timeout 60 /tmp/lf > $L/launch_floor.log 2>&1; note "launch_floor rc $?"
cat $L/launch_floor.log >> $S; pack
for sh in qwen3-0.6b qwen3-8b; do
  BITROLL_LIB=build-gpu/libbitroll.so timeout 120 python3 bench/exp/step_timeline.py configs/shapes/$sh.json 1 64 > $L/timeline_$sh.log 2>&1; note "timeline $sh rc $?"
  head -45 $L/timeline_$sh.log >> $S; pack
done
timeout 120 build-gpu/bitroll bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,4,16 --new-tokens 64 > $L/bench06.log 2>&1; note "bench 0.6b rc $?"
grep -A12 -i "generate" $L/bench06.log | head -20 >> $S; pack
(cd build-gpu && timeout 200 ctest -R 'gpu_fp32_cpu_equal|test_comm_nccl' --output-on-failure > $L/ctest.log 2>&1); note "ctest fp32+nccl rc $?"
tail -8 $L/ctest.log >> $S; pack
LOGS=$L/rl STAGES="rl" timeout 170 bash tests/gpu/bench_rl.sh > $L/rl.log 2>&1; note "bench_rl rl rc $?"
tail -15 $L/rl.log >> $S; pack
