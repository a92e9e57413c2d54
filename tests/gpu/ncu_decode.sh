#!/usr/bin/env bash
# Kernel durations of decode steps under Nsight Compute (hardware timer, one kernel at a time, caches left warm):
# what each launch of a batch-B decode step costs on the GPU, without the host's launch rate. Builds bitroll if
# build-gpu lacks it. Prints a table of kernel name -> launches per step, us per step, share; raw CSV under $LOGS.
# usage: B=1 STEPS=3 LOGS=/tmp/gpulogs bash tests/gpu/ncu_decode.sh   (on the GPU machine, from the repo root)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${LOGS:-${OUT:-$ROOT/gpu-out}}
mkdir -p "$OUT"
B=${B:-1}
STEPS=${STEPS:-3}
CFG=${CFG:-configs/shapes/qwen3-0.6b.json}
BUILD=${BUILD:-$ROOT/build-gpu}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
[ -x "$BUILD/bitroll" ] || { echo "build $BUILD/bitroll first (tests/gpu/run.sh)"; exit 1; }
# launches before the decode steps we keep: weight generation and prefill, counted by a first pass
cd "$ROOT"
run() { BITROLL_CUDA_GRAPHS=0 "$@" "$BUILD/bitroll" bench --random-weights "$CFG" --no-kernel-table --modes invariant \
        --batches "$B" --prompt-len 64 --new-tokens 24; }
"$NCU" --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base \
    --launch-skip "${SKIP:-0}" --launch-count "${COUNT:-4000}" -o "$OUT/ncu_b$B" -f \
    env BITROLL_CUDA_GRAPHS=0 "$BUILD/bitroll" bench --random-weights "$CFG" --no-kernel-table --modes invariant \
        --batches "$B" --prompt-len 64 --new-tokens 24 >"$OUT/ncu_b$B.run.log" 2>&1
"$NCU" --import "$OUT/ncu_b$B.ncu-rep" --csv --print-units base --page raw \
    --metrics gpu__time_duration.sum >"$OUT/ncu_b$B.csv" 2>"$OUT/ncu_b$B.import.err"
python3 - "$OUT/ncu_b$B.csv" "$STEPS" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hdr = rows[0]; data = [r for r in rows[2:] if len(r) == len(hdr)]
ki = hdr.index("Kernel Name"); ti = hdr.index("gpu__time_duration.sum")
seq = [(r[ki].split("(")[0].split("<")[0].replace("void ", ""), float(r[ti].replace(",", "")) / 1e3) for r in data]
print(f"{len(seq)} kernels profiled")
# decode steps: the vocabulary-row kernel ends each step; take the last STEPS complete steps
ends = [i for i, (n, _) in enumerate(seq) if "vocab_final" in n]
print("step-ending kernels found:", len(ends))
steps = int(sys.argv[2])
if len(ends) < steps + 2:
    print("not enough steps"); sys.exit(0)
lo, hi = ends[-steps - 2] + 1, ends[-2] + 1
agg = collections.OrderedDict()
for n, t in seq[lo:hi]:
    c = agg.setdefault(n, [0, 0.0]); c[0] += 1; c[1] += t
tot = sum(v[1] for v in agg.values())
print(f"per decode step (mean of {steps}): {tot/steps:.1f} us of kernels, {(hi-lo)/steps:.0f} launches")
for n, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"  {n[:60]:60s} {c/steps:6.0f} launches {t/steps:9.1f} us {100*t/tot:5.1f}%  {t/c:7.2f} us each")
PY
