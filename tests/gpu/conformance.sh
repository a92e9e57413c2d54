#!/usr/bin/env bash
# The conformance suite (tests/conformance/conformance.py, docs/REPRODUCIBILITY.md) on a GPU machine: builds bitroll
# with CUDA (as tests/gpu/run.sh does), then runs every test in the invariant, standard and fp32 kernel modes for a
# Qwen3-0.6B-shape model with random weights and for each bundled checkpoint (configs/models/*). Logs, results.json
# and plots go under $LOGS (default $OUT, else ./gpu-out)/conformance/<model>/; a summary table is printed last.
# Usage (repository root):   LOGS=/tmp/gpulogs timeout 590 bash tests/gpu/conformance.sh [qwen3-0.6b] [stories260K]
#   then: tar czf $OUT/conformance.tgz -C /tmp/gpulogs conformance
# PROFILE=gpu (default) or gpu-quick (smaller: a first look), MODES=invariant,standard,fp32 (default).
# Exit 0 iff every must-pass test passed on every model (negative controls never fail it; see the table).
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOGDIR=${LOGS:-${OUT:-$ROOT/gpu-out}}/conformance
mkdir -p "$LOGDIR"
SECONDS=0
stage() { echo "[conformance.sh ${SECONDS}s] $*"; }
DEPS_DIR=${DEPS_DIR:-}
if [ -z "$DEPS_DIR" ]; then
  for d in "$ROOT/../.deps" "$ROOT/.deps"; do [ -d "$d" ] && DEPS_DIR=$d && break; done
fi
PREFIX=/tmp/deps
mkdir -p "$PREFIX"
if [ -n "$DEPS_DIR" ]; then
  for f in "$DEPS_DIR"/*.deb; do dpkg -x "$f" "$PREFIX"; done
fi
export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$LOGDIR/gpu.txt"

BUILD=${BUILD:-$ROOT/build-gpu}
cfg() {
  cmake -S "$ROOT" -B "$BUILD" -DBITROLL_CUDA=ON -DBITROLL_WERROR=${WERROR:-OFF} -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$PREFIX/usr" "$@"
}
if ! cfg >"$LOGDIR/configure.log" 2>&1; then
  HS=/usr/lib/x86_64-linux-gnu/hdf5/serial
  cfg -DHDF5_ROOT=$HS -DHDF5_C_INCLUDE_DIR=/usr/include/hdf5/serial -DHDF5_C_LIBRARY=$HS/libhdf5.so \
      >>"$LOGDIR/configure.log" 2>&1 || { tail -40 "$LOGDIR/configure.log"; echo "configure FAILED"; exit 1; }
fi
cmake --build "$BUILD" --target bitroll bitroll_shared -j "$(nproc)" >"$LOGDIR/build.log" 2>&1 \
  || { tail -40 "$LOGDIR/build.log"; echo "build FAILED"; exit 1; }
stage "build done"

# the first python3 with numpy and h5py: PATH's (the GPU machine's has them), then Debian's
PY=
for p in "${PYTHON:-}" "$(command -v python3)" /usr/bin/python3; do
  [ -n "$p" ] && [ -x "$p" ] && "$p" -c "import numpy, h5py" 2>/dev/null && { PY=$p; break; }
done
[ -n "$PY" ] || { echo "the suite needs a python3 with numpy and h5py (tried \$PYTHON, PATH's python3, /usr/bin/python3)"; exit 1; }
"$PY" -c "import matplotlib" 2>/dev/null || echo "note: matplotlib missing: results.json and tables only, no plots"

TARGETS=("$@")
if [ ${#TARGETS[@]} = 0 ]; then
  TARGETS=(qwen3-0.6b)
  for m in "$ROOT"/configs/models/*/; do TARGETS+=("$(basename "$m")"); done
fi
rc=0
for t in "${TARGETS[@]}"; do
  if [ -f "$ROOT/configs/shapes/$t.json" ]; then
    what=(--random-weights "$ROOT/configs/shapes/$t.json")
  elif [ -d "$ROOT/configs/models/$t" ]; then
    what=(--model "$ROOT/configs/models/$t")
  else
    echo "unknown target '$t': expected configs/shapes/<t>.json or configs/models/<t>"; rc=2; continue
  fi
  stage "conformance: $t"
  code=0
  "$PY" "$ROOT/tests/conformance/conformance.py" --bitroll "$BUILD/bitroll" --lib "$BUILD/libbitroll.so" \
      --device cuda "${what[@]}" --modes "${MODES:-invariant,standard,fp32}" --profile "${PROFILE:-gpu}" \
      --out "$LOGDIR/$t" 2>&1 | tee "$LOGDIR/$t.log" || code=$?
  echo "$t: conformance.py exit $code"
  [ "$code" = 0 ] || rc=1
done
stage "all done"

echo
echo "================ conformance summary ================"
echo "device: $(sed -n 2p "$LOGDIR/gpu.txt")"
for t in "${TARGETS[@]}"; do
  [ -f "$LOGDIR/$t/results.json" ] || { echo "$t: no results.json (see $t.log)"; continue; }
  "$PY" - "$LOGDIR/$t/results.json" "$t" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} ({r['provenance']['fingerprint']}, {r['seconds']} s): {'PASS' if r['passed'] else 'FAIL'}")
for x in r["results"]:
    print(f"  {x['mode']:9s} {x['test']:18s} {x['role']:9s} {x['status']:13s} {x['seconds']:6.1f}s  {x['measured'][:110]}")
PY
done
exit $rc
