#!/usr/bin/env bash
# Kernel durations of decode steps under Nsight Compute (hardware timer, one kernel at a time, caches left warm):
# what each launch of a batch-B decode step costs on the GPU, without the host's launch rate or the overlap of
# programmatic dependent launches. Needs build-gpu/bitroll (tests/gpu/run.sh builds it). Profiles the first COUNT
# launches of `bitroll bench` (graphs off) and prints, for the last STEPS pure decode steps among them, kernel name
# -> launches per step, us per step, share; raw CSV under $LOGS.
# usage: B=1 STEPS=4 COUNT=3000 LOGS=/tmp/gpulogs bash tests/gpu/ncu_decode.sh   (GPU machine, repository root)
# MODE=fp32: the fp32 mode (its steps end with cpuo_lse_kernel; its attention launches a block per row and head:
# GRIDX=B*heads marks its decode steps, e.g. GRIDX=16 for Qwen3-0.6B at B=1). CFG: another model shape.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${LOGS:-${OUT:-$ROOT/gpu-out}}
mkdir -p "$OUT"
B=${B:-1}
MODE=${MODE:-invariant}
END=${END:-$([ "$MODE" = fp32 ] && echo cpuo_lse_kernel || echo vocab_final)}
GRIDX=${GRIDX:-$B}
STEPS=${STEPS:-4}
[ "$STEPS" -ge 1 ] 2>/dev/null || { echo "STEPS must be >= 1"; exit 2; }
CFG=${CFG:-configs/shapes/qwen3-0.6b.json}
BUILD=${BUILD:-$ROOT/build-gpu}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
[ -x "$BUILD/bitroll" ] || { echo "build $BUILD/bitroll first (tests/gpu/run.sh)"; exit 1; }
cd "$ROOT"
"$NCU" --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base \
    --launch-skip "${SKIP:-0}" --launch-count "${COUNT:-3000}" -o "$OUT/ncu_b$B" -f \
    env BITROLL_CUDA_GRAPHS=0 "$BUILD/bitroll" bench --random-weights "$CFG" --no-kernel-table --modes "$MODE" \
        --batches "$B" --prompt-len 64 --new-tokens 24 >"$OUT/ncu_b$B.run.log" 2>&1 \
    || { echo "ncu failed: $OUT/ncu_b$B.run.log"; tail -5 "$OUT/ncu_b$B.run.log"; exit 1; }
"$NCU" --import "$OUT/ncu_b$B.ncu-rep" --csv --print-units base --page raw \
    --metrics gpu__time_duration.sum >"$OUT/ncu_b$B.csv" 2>"$OUT/ncu_b$B.import.err"
python3 - "$OUT/ncu_b$B.csv" "$STEPS" "$B" "$END" "$GRIDX" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
h = rows[0]; d = [r for r in rows[2:] if len(r) == len(h)]
ki, ti, gi = h.index("Kernel Name"), h.index("gpu__time_duration.sum"), h.index("Grid Size")
seq = [(r[ki].split("(")[0].split("<")[0].replace("void ", ""), r[gi], float(r[ti].replace(",", "")) / 1e3) for r in d]
print(f"{len(seq)} kernels profiled")
# a step ends with the vocabulary rows' last kernel (argv[4]); keep pure decode steps of batch B (every attention or
# K/V write launch with grid.x = B, one row per block, or argv[5]), the last STEPS of them
ends = [i for i, s in enumerate(seq) if sys.argv[4] in s[0]]
gx = (f"({sys.argv[3]},", f"({sys.argv[5]},")
steps = []
for a, b in zip(ends, ends[1:]):
    st = seq[a + 1:b + 1]
    bad = any(("attn" in n or "kv_write" in n) and not g.startswith(gx) for n, g, _ in st)
    if not bad and any("attn" in n for n, _, _ in st): steps.append(st)
steps = steps[-int(sys.argv[2]):]
if not steps: print("no pure decode step found"); sys.exit(0)
agg = collections.OrderedDict()
for st in steps:
    for n, g, t in st:
        c = agg.setdefault(n, [0, 0.0]); c[0] += 1; c[1] += t
k = len(steps); tot = sum(v[1] for v in agg.values())
print(f"per decode step (mean of {k}): {tot/k:.1f} us of kernels, {sum(v[0] for v in agg.values())/k:.0f} launches")
for n, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"  {n[:40]:40s} {c/k:5.0f} launches {t/k:9.1f} us {100*t/tot:5.1f}%  {t/c:7.2f} us each")
PY
