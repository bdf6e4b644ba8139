#!/usr/bin/env bash
# make fuzz: builds each tests/fuzz/fuzz_*.c as a libFuzzer binary with clang
# (ASan + UBSan; the library itself is built with -fsanitize=fuzzer-no-link so
# that libFuzzer sees the coverage of the code under test, not only the
# harness) and runs it for FUZZ_TIME seconds with its dictionary
# (tests/fuzz/<name>.dict when present). FUZZ_ONLY=name runs one harness.
# The seeds in tests/fuzz/corpus/<name> are read, never written: new inputs
# go to build-fuzz/corpus/<name> and crashes to build-fuzz/artifacts/ (after
# the fix, copy a crash input into tests/fuzz/corpus/<name>/crash-<what>
# so that `make test` replays it forever).
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_TIME=${FUZZ_TIME:-60}
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang)" >&2; exit 2; }
# objects built without coverage (older script) must not be reused
flags="CC=clang SAN=1 OPENMP=0 CFLAGS=-fsanitize=fuzzer-no-link"
if [ -d build-fuzz ] && [ "$(cat build-fuzz/.flags 2>/dev/null)" != "$flags" ]; then rm -rf build-fuzz; fi
mkdir -p build-fuzz/artifacts
echo "$flags" > build-fuzz/.flags
make --no-print-directory CC=clang BUILD=build-fuzz SAN=1 OPENMP=0 \
  CFLAGS=-fsanitize=fuzzer-no-link build-fuzz/libqtool.a
PKG=$(pkg-config --cflags --libs libzstd libcjson)
status=0
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  [ -n "${FUZZ_ONLY:-}" ] && [ "$FUZZ_ONLY" != "$name" ] && continue
  bin=build-fuzz/$name
  clang -std=c11 -g -O1 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all "$src" build-fuzz/libqtool.a $PKG -lm -o "$bin"
  mkdir -p "tests/fuzz/corpus/$name" "build-fuzz/corpus/$name"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== $name for ${FUZZ_TIME}s"
  if ! "$bin" "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" "${dict[@]}" \
        -max_total_time="$FUZZ_TIME" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="build-fuzz/artifacts/$name-" -print_final_stats=1 2>&1 | tail -n 14; then
    status=1
  fi
done
exit $status
