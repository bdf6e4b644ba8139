#!/usr/bin/env bash
# bench/run-bench.sh: qtool's benchmarks, run by `make bench`.
#   kernels: `qtool bench kernels` (quantize / dequantize / matmul throughput
#            on synthetic Llama-7B shapes, each result checked against _ref);
#            table on stdout and in $OUT/kernels.txt, JSON lines in
#            $OUT/kernels.jsonl. KERNELS_ARGS adds options (e.g. --small).
# Figures and the command line are recorded in docs/BENCHMARKS.md.
set -euo pipefail
BUILD=${BUILD:-build}
QTOOL=${QTOOL:-$BUILD/qtool}
OUT=${OUT:-$BUILD/bench}
mkdir -p "$OUT"
QT_GIT_DESCRIBE=$(git describe --always --dirty 2>/dev/null || echo unknown)
export QT_GIT_DESCRIBE

echo "== kernels (qtool bench kernels ${KERNELS_ARGS:-})"
# shellcheck disable=SC2086
"$QTOOL" bench kernels ${KERNELS_ARGS:-} | tee "$OUT/kernels.txt"
# shellcheck disable=SC2086
"$QTOOL" bench kernels --json --no-matmul --src bf16 --scheme nf4-dq ${KERNELS_ARGS:-} \
  > "$OUT/kernels.jsonl"
echo "kernels: $OUT/kernels.txt, $OUT/kernels.jsonl"
