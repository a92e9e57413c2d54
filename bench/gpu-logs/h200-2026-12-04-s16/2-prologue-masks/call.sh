#!/usr/bin/env bash
set -u
L=/tmp/l2; mkdir -p $L $OUT; S=$OUT/summary.txt
pack() { tar czf $OUT/logs.tgz --exclude='*.h5' --exclude='*.jsonl' -C $L . 2>/dev/null; }
note() { echo "[$(date +%T) ${SECONDS}s] $*" | tee -a $S; }
SECONDS=0
BUILD_ONLY=1 WERROR=ON LOGS=$L bash tests/gpu/run.sh > $L/build_run.log 2>&1; note "build rc $?"
[ -x build-gpu/bitroll ] || { tail -40 $L/build_run.log >> $S; pack; exit 1; }
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
E2E="build-gpu/bitroll bench --no-kernel-table --random-weights"
for rep in 1 2; do
for m in 0 1 2 3 4 5; do
  BR_TMP_PRO=$m timeout 60 $E2E configs/shapes/qwen3-0.6b.json --modes invariant --batches 1,2,4 --new-tokens 64 > $L/e2e_06_m${m}_$rep.log 2>&1; note "0.6b mask $m rc $?"
  grep -E "^invariant" $L/e2e_06_m${m}_$rep.log >> $S
done
for m in 0 1 2 4 5; do
  BR_TMP_PRO=$m timeout 60 $E2E configs/shapes/qwen3-8b.json --modes invariant --batches 1 --new-tokens 64 > $L/e2e_8b_m${m}_$rep.log 2>&1; note "8b mask $m rc $?"
  grep -E "^invariant" $L/e2e_8b_m${m}_$rep.log >> $S
done
pack
done
for m in 0 1 4; do
  BR_TMP_PRO=$m BITROLL_LIB=build-gpu/libbitroll.so timeout 100 python3 bench/exp/step_timeline.py configs/shapes/qwen3-0.6b.json 1 64 32 > $L/timeline_m$m.log 2>&1; note "timeline mask $m rc $?"
  grep -v Warn $L/timeline_m$m.log | grep -v _warn | head -14 >> $S; pack
done
note "end"
