#!/usr/bin/env bash
# Issue 15's must-shows on the committed tree, part 1: end to end by mode and batch (+ the kernel table: GEMM vs
# cuBLAS), the 8B shape at batch 1, the memory plan runs, the RL workload invariant and standard, HF in the same call.
set -u
L=/tmp/l3; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
B=build-gpu/bitroll
timeout 150 $B bench --random-weights configs/shapes/qwen3-0.6b.json --modes invariant,standard,fp32 --batches 1,64 --new-tokens 128 > $L/e2e_06_modes.log 2>&1; note "0.6b modes 1,64 (+ kernel table) rc $?"
grep -E "4096x4096x4096|^ *(M|shape) |^(invariant|standard|fp32) " $L/e2e_06_modes.log >> $S; pack
timeout 90 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes invariant,standard --batches 256 --new-tokens 128 > $L/e2e_06_256.log 2>&1; note "0.6b 256 rc $?"
grep -E "^(invariant|standard) " $L/e2e_06_256.log >> $S
for r in 1 2; do
  timeout 60 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-8b.json --modes invariant --batches 1 --new-tokens 64 > $L/e2e_8b_$r.log 2>&1; note "8b batch 1 run $r rc $?"
  grep -E "^invariant " $L/e2e_8b_$r.log >> $S
  timeout 60 $B bench --no-kernel-table --random-weights configs/shapes/qwen3-0.6b.json --modes invariant --batches 1 --new-tokens 64 > $L/e2e_06b1_$r.log 2>&1; note "0.6b batch 1 run $r rc $?"
  grep -E "^invariant " $L/e2e_06b1_$r.log >> $S
done
pack
LOGS=$L/rl STAGES="mem rl hf" timeout 330 bash tests/gpu/bench_rl.sh > $L/bench_rl.log 2>&1; note "bench_rl mem rl hf rc $?"
sed -n '/==== summary/,$p' $L/bench_rl.log | cut -c1-300 >> $S; pack
timeout 150 $B bench --workload rl --random-weights configs/shapes/qwen3-0.6b.json --device cuda --kernels standard --new-tokens 1024 --top-p 1.0 --json $L/rl_std.json > $L/rl_std.log 2>&1; note "rl standard rc $?"
grep -E "copy bandwidth|cuda memory plan|^ +new |^ +[0-9]+ +[01]\.[0-9]+ " $L/rl_std.log | cut -c1-300 >> $S; pack
note "end"
