#!/bin/bash
# session 17, call 5: mega_floor with bank-conflict-free attention reads, 8 and 16 consumer warps a block
set -u
for w in 8 16; do
  /usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=$w -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mega_floor$w > $OUT/nvcc$w.log 2>&1; echo "nvcc $w rc $?" | tee -a $OUT/summary.txt
done
for args in "28 64" "1 64" "28 16"; do
  for w in 8 16 8 16; do
    echo "== mega_floor ($w consumer warps) $args" | tee -a $OUT/summary.txt
    timeout 60 /tmp/mega_floor$w $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
  done
done
