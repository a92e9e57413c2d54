#!/bin/bash
# session 17, call 4: mega_floor, the count without a __threadfence (release add alone)
set -u
/usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mega_floor > $OUT/nvcc.log 2>&1; echo "nvcc rc $?" | tee -a $OUT/summary.txt
for args in "28 64" "28 64"; do
  echo "== mega_floor $args" | tee -a $OUT/summary.txt
  timeout 60 /tmp/mega_floor $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
done
echo "== ncu: the no-bytes megakernel (sync + compute), warp stalls" | tee -a $OUT/summary.txt
timeout 200 ncu --kernel-name-base mangled -k 'regex:_Z4megaILi6ELb0ELb1ELi1ELb1E' --launch-count 1 --section WarpStateStats --section SchedulerStats --section SpeedOfLight --section SourceCounters /tmp/mega_floor 28 64 > $OUT/ncu.txt 2>&1; echo "ncu rc $?" | tee -a $OUT/summary.txt
grep -iE "stall|Warp Cycles|Duration|Issued|Eligible" $OUT/ncu.txt | head -60 | tee -a $OUT/summary.txt
