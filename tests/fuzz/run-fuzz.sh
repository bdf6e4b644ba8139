#!/usr/bin/env bash
# make fuzz: builds each tests/fuzz/fuzz_*.c as a libFuzzer binary with clang
# (ASan + UBSan) and runs it for FUZZ_TIME seconds on its corpus
# (tests/fuzz/corpus/<name>, new finds are added there) with its dictionary
# (tests/fuzz/<name>.dict when present).
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_TIME=${FUZZ_TIME:-60}
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang)" >&2; exit 2; }
make --no-print-directory CC=clang BUILD=build-fuzz SAN=1 OPENMP=0 build-fuzz/libqtool.a
PKG=$(pkg-config --cflags --libs libzstd libcjson)
status=0
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  bin=build-fuzz/$name
  clang -std=c11 -g -O1 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all "$src" build-fuzz/libqtool.a $PKG -lm -o "$bin"
  mkdir -p "tests/fuzz/corpus/$name"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== $name for ${FUZZ_TIME}s"
  if ! "$bin" "tests/fuzz/corpus/$name" "${dict[@]}" -max_total_time="$FUZZ_TIME" \
        -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12; then
    status=1
  fi
done
exit $status
