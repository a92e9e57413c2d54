#!/usr/bin/env bash
# Runs the Python package's tests (tests/python/test_*.py, unittest) against a built libbitroll.
#
#   tests/python/run.sh [LIBBITROLL_SO [BITROLL_BINARY]] [TEST...]
#
# LIBBITROLL_SO: default $BITROLL_LIB, else build/libbitroll.so; BITROLL_BINARY: default $BITROLL_BIN, else the
# `bitroll` next to the library. TEST: unittest names (test_package, test_trainer.TestTrainer.test_tiny_qwen3, ...);
# default: every test_*.py here. Uses Debian's /usr/bin/python3 (override: BITROLL_PYTHON), which has numpy, h5py
# and torch (python3-numpy, python3-h5py, python3-torch): a missing one FAILS (exit 1), it is never a skip.
# Exports PYTHONPATH=<repo>/python, BITROLL_LIB, BITROLL_BIN; $BITROLL_REPORT_DIR, when set, receives the
# negative-control numbers of test_trainer (python_trainer_<model>.json).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${BITROLL_LIB:-$ROOT/build/libbitroll.so}
if [ $# -gt 0 ] && [[ $1 == *.so* ]]; then LIB=$1; shift; fi
BIN=${BITROLL_BIN:-$(dirname "$LIB")/bitroll}
if [ $# -gt 0 ] && [ -x "$1" ] && [ ! -d "$1" ]; then BIN=$1; shift; fi
PY=${BITROLL_PYTHON:-/usr/bin/python3}

[ -f "$LIB" ] || { echo "run.sh: $LIB: no such library (build it, or pass its path)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "run.sh: $BIN: no bitroll binary (pass its path)" >&2; exit 1; }
command -v "$PY" >/dev/null || { echo "run.sh: $PY: no such python (apt-get install python3)" >&2; exit 1; }
for mod in numpy h5py torch; do
  "$PY" -c "import $mod" 2>/dev/null ||
    { echo "run.sh: $PY cannot import $mod: the Python tests need it (Debian: apt-get install python3-$mod)" >&2; exit 1; }
done

export BITROLL_LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
export BITROLL_BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export PYTHONPATH=$ROOT/python:$HERE${PYTHONPATH:+:$PYTHONPATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
# A sanitizer build's library needs its ASan / UBSan runtimes loaded first (tests/cli/lib/common.bash san_env): they
# are preloaded into Python (and so into the bitroll / mpirun processes it starts), with leak checking off, since
# Python's and torch's own allocations at exit are not ours to report.
SAN_LIBS=$(ldd "$BITROLL_LIB" | awk '/lib(asan|ubsan)\.so/ {print $3}' | tr '\n' ':')
if [ -n "$SAN_LIBS" ]; then
  export LD_PRELOAD=${SAN_LIBS%:}${LD_PRELOAD:+:$LD_PRELOAD}
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
fi

if [ $# -eq 0 ]; then
  set -- $(cd "$HERE" && ls test_*.py | sed 's/\.py$//')
fi
cd "$HERE"
exec "$PY" -m unittest -v "$@"
