#!/bin/bash
# session 17, call 7: mega_floor with timed phases (clock64 of each block's consumer thread 0)
set -u
for w in 8 16; do
  /usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=$w -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mf_$w > $OUT/nvcc_$w.log 2>&1; echo "nvcc warps $w rc $?" | tee -a $OUT/summary.txt
done
for args in "28 64" "28 64" "1 64"; do
  for w in 8 16; do
    echo "== mega_floor ($w consumer warps) $args" | tee -a $OUT/summary.txt
    timeout 60 /tmp/mf_$w $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
  done
done
