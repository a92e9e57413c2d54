# examples/c against an installed bitroll: `cmake --install` of this build into a scratch prefix; score_verify built
# with find_package(bitroll) (bitroll::bitroll and bitroll::bitroll_static) and with pkg-config (shared, and static
# through Libs.private); each run on rollouts that the installed CLI generates with stories260K must exit 0 with zero
# mismatches and KL 0, having written a scores file that `bitroll verify` accepts; a missing model and a model with
# other weights must exit 2 with the library's message.
source "$(dirname "$0")/lib/common.bash" "$@"
ROOT=$(cd "$DATA/../.." && pwd)
BUILD=$(cd "$(dirname "$BITROLL")" && pwd) # the bitroll binary sits at the top of the project's build dir
[ -f "$BUILD/CMakeCache.txt" ] || fail "no CMakeCache.txt in $BUILD (the directory of $BITROLL)"
[ -f "$ROOT/examples/c/score_verify.c" ] || fail "no examples/c/score_verify.c under $ROOT"
if ! command -v pkg-config >/dev/null; then
    echo "SKIP: pkg-config is not installed (Debian: apt-get install pkg-config)"
    exit 77
fi
cache() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt" | head -n 1; }
CMAKE=$(cache CMAKE_COMMAND)
[ -x "$CMAKE" ] || CMAKE=cmake
CC=$(cache CMAKE_C_COMPILER)
[ -x "$CC" ] || CC=cc
# the project's sanitizers must be in the program that loads its library too
SAN=""
[ "$(cache BITROLL_ASAN)" = ON ] && SAN="$SAN -fsanitize=address"
[ "$(cache BITROLL_UBSAN)" = ON ] && SAN="$SAN -fsanitize=undefined"
CFLAGS="-Wall -Wextra -Werror -pedantic$SAN"
PREFIX=$TMP/prefix

# ---- install
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log"; fail "cmake --install $BUILD"; }
for f in bin/bitroll include/bitroll/bitroll.h; do
    [ -f "$PREFIX/$f" ] || fail "$f was not installed"
done
CONFIG=$(find "$PREFIX" -name bitrollConfig.cmake)
PC=$(find "$PREFIX" -name bitroll.pc)
[ -n "$CONFIG" ] && [ -f "$(dirname "$CONFIG")/bitrollConfigVersion.cmake" ] || fail "no bitrollConfig.cmake + bitrollConfigVersion.cmake"
[ -n "$PC" ] || fail "no bitroll.pc"
LIBDIR=$(cd "$(dirname "$PC")/.." && pwd)
for f in libbitroll.a libbitroll.so libbitroll.so.0; do
    [ -e "$LIBDIR/$f" ] || fail "$f was not installed in $LIBDIR"
done
grep -q 'SONAME.*libbitroll\.so\.0\]' <<<"$(readelf -d "$LIBDIR/libbitroll.so")" || fail "libbitroll.so has no SONAME libbitroll.so.0"
"$PREFIX/bin/bitroll" --help >/dev/null || fail "the installed bitroll does not run"

# ---- CMake: find_package(bitroll) from the prefix
EX=$TMP/example-build
"$CMAKE" -S "$ROOT/examples/c" -B "$EX" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_BUILD_TYPE=Release -DSCORE_VERIFY_STATIC=ON \
    >"$TMP/example-config.log" 2>&1 || { cat "$TMP/example-config.log"; fail "configuring examples/c"; }
[ "$(sed -n 's/^bitroll_DIR:PATH=//p' "$EX/CMakeCache.txt")" = "$(dirname "$CONFIG")" ] ||
    fail "examples/c found bitroll somewhere else than $PREFIX: $(grep bitroll_DIR "$EX/CMakeCache.txt")"
"$CMAKE" --build "$EX" -j 2 >"$TMP/example-build.log" 2>&1 || { cat "$TMP/example-build.log"; fail "building examples/c"; }
[ -x "$EX/score_verify" ] && [ -x "$EX/score_verify_static" ] || fail "examples/c built no score_verify / score_verify_static"
grep -q 'NEEDED.*libbitroll\.so\.0' <<<"$(readelf -d "$EX/score_verify")" || fail "score_verify does not load libbitroll.so.0"
! grep -q 'NEEDED.*libbitroll' <<<"$(readelf -d "$EX/score_verify_static")" || fail "score_verify_static loads libbitroll.so"

# ---- pkg-config (the libdir's rpath so that the programs run without LD_LIBRARY_PATH)
PKG_CONFIG_PATH=$(dirname "$PC")
export PKG_CONFIG_PATH
pkg-config --exists bitroll || fail "pkg-config does not find bitroll.pc"
PC_LIBDIR=$(pkg-config --variable=libdir bitroll)
[ "$(cd "$PC_LIBDIR" && pwd)" = "$LIBDIR" ] || fail "bitroll.pc's libdir $PC_LIBDIR is not $LIBDIR"
# shellcheck disable=SC2046,SC2086
"$CC" $CFLAGS -o "$TMP/score_verify_pc" "$ROOT/examples/c/score_verify.c" $(pkg-config --cflags --libs bitroll) $SAN \
    -Wl,-rpath,"$PC_LIBDIR" || fail "cc \$(pkg-config --cflags --libs bitroll) failed"
# static: libbitroll.a and Libs.private (pkg-config --static) must be all the link needs
STATIC_LIBS=$(pkg-config --static --libs bitroll | sed 's/-lbitroll\b/-l:libbitroll.a/')
# shellcheck disable=SC2046,SC2086
"$CC" $CFLAGS -o "$TMP/score_verify_pc_static" "$ROOT/examples/c/score_verify.c" $(pkg-config --cflags bitroll) \
    $STATIC_LIBS $SAN || fail "cc with pkg-config --static --libs bitroll ($STATIC_LIBS) failed"

# ---- rollouts from the installed CLI, then each program scores and verifies them
write_prompts "$TMP/p.jsonl"
"$PREFIX/bin/bitroll" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/rollouts.h5" \
    --max-new-tokens 16 --n 2 --temperature 1 --seed 3 --quiet || fail "bitroll generate"
[ -s "$TMP/rollouts.h5" ] || fail "bitroll generate wrote no rollouts file"
"$BITROLL" show "$TMP/rollouts.h5" >/dev/null || fail "bitroll show cannot read the rollouts"
for prog in "$EX/score_verify" "$EX/score_verify_static" "$TMP/score_verify_pc" "$TMP/score_verify_pc_static"; do
    name=$(basename "$prog")
    scores=$TMP/scores.$name.h5
    code=0
    "$prog" "$MODEL" "$TMP/rollouts.h5" "$scores" >"$TMP/$name.out" 2>&1 || code=$?
    cat "$TMP/$name.out"
    [ "$code" = 0 ] || fail "$name exited $code"
    [ -s "$scores" ] || fail "$name wrote no scores file"
    grep -q "^result  *bitwise equal" "$TMP/$name.out" || fail "$name: not bitwise equal"
    grep -q "^logprob mismatches  *0$" "$TMP/$name.out" || fail "$name: log-prob mismatches"
    grep -q "^digest mismatches  *0$" "$TMP/$name.out" || fail "$name: digest mismatches"
    grep -q "^mean KL estimate  *0$" "$TMP/$name.out" || fail "$name: KL estimate not 0"
    # the same token count as the CLI's verify of the same files, and the CLI accepts the scores file
    "$BITROLL" verify "$TMP/rollouts.h5" "$scores" >"$TMP/$name.verify.txt" || fail "bitroll verify rejects $name's scores"
    want=$(sed -n 's/^tokens compared  *//p' "$TMP/$name.verify.txt")
    got=$(sed -n 's/^tokens compared  *//p' "$TMP/$name.out")
    [ -n "$want" ] && [ "$want" -gt 0 ] && [ "$got" = "$want" ] || fail "$name compared '$got' tokens, bitroll verify '$want'"
    echo "ok: $name ($got tokens, bitwise equal)"
done

# ---- errors reach the caller with the library's message, exit 2, no scores file
expect_exit 2 "no-such-model" "$EX/score_verify" "$TMP/no-such-model" "$TMP/rollouts.h5" "$TMP/scores.none.h5"
[ ! -e "$TMP/scores.none.h5" ] || fail "a scores file was written without a model"
# a checkpoint with other weights (one low mantissa bit of model.norm.weight[0]): its fingerprint is not the rollouts'
mkdir -p "$TMP/other-model"
cp "$MODEL"/*.json "$TMP/other-model/"
python3 - "$MODEL/model.safetensors" "$TMP/other-model/model.safetensors" <<'PY'
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
t = json.loads(raw[8:8 + n])["model.norm.weight"]
assert t["dtype"] in ("F32", "BF16", "F16"), t
raw[8 + n + t["data_offsets"][0]] ^= 1  # little endian: the lowest mantissa bit of the first element
open(sys.argv[2], "wb").write(raw)
PY
cmp -s "$MODEL/model.safetensors" "$TMP/other-model/model.safetensors" && fail "the other model has the same weights"
expect_exit 2 "fingerprint" "$EX/score_verify" "$TMP/other-model" "$TMP/rollouts.h5" "$TMP/scores.other.h5"
[ ! -e "$TMP/scores.other.h5" ] || fail "a scores file was written for another policy"
# ---- the Python package from the same prefix: it loads the prefix's libbitroll.so and verifies the same pair
PYDIR=$PREFIX/lib/python3/dist-packages
[ -f "$PYDIR/bitroll/__init__.py" ] || fail "the Python package is not installed under $PYDIR"
[ -z "$(find "$PYDIR/bitroll" -name __pycache__)" ] || fail "__pycache__ was installed"
# a sanitizer build's libbitroll needs its runtime loaded first
san_env "$PREFIX/lib/libbitroll.so"
env -u BITROLL_LIB "${SAN_ENV[@]}" PYTHONPATH="$PYDIR" "$PYTHON" - "$PREFIX" "$TMP/rollouts.h5" "$TMP/scores.score_verify.h5" <<'PY' || fail "installed Python package"
import os, sys
import bitroll
from bitroll import _lib
prefix, rollouts, scores = sys.argv[1:4]
assert os.path.realpath(bitroll.__file__).startswith(os.path.realpath(prefix)), bitroll.__file__
rep = bitroll.verify(rollouts, scores)
path = _lib.library_path()
assert os.path.realpath(path).startswith(os.path.realpath(prefix)), path
assert rep.equal and rep.tokens > 0, rep
print("installed python package:", bitroll.library_version(), "from", path, "verify:", rep)
PY
echo "ok: the installed Python package loads the prefix's libbitroll and verifies the example's scores"
echo "PASS"
