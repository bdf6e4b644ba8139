#!/usr/bin/env bash
# CLI test of `convert --match` and `qtool verify` on the GPU goldens
# (../shared/data/golden/transformers-bnb-cuda): exit codes, messages, the
# reciprocal table's checks, and that --match cuda is recorded.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}
G=$D/golden/transformers-bnb-cuda
T=$D/cuda/rcp-sm90-2bit.zst
[ -f "$G/gpu-fp4dq-f16.safetensors" ] && [ -f "$T" ] || { echo "skipped: $G or $T is absent"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
S=$(mktemp -d); trap 'rm -rf "$S"' EXIT
# the CUDA bytes: identical, exit 0
"$Q" verify "$D/models/stories260K-f16" "$G/gpu-fp4dq-f16.safetensors" --match cuda --rcp-table "$T" > "$S/out" \
  || fail "verify --match cuda: exit $?"
grep -q '222 of 222 tensors identical' "$S/out" || fail "verify summary: $(tail -1 "$S/out")"
# the CPU bytes of a GPU file: 4 tensors differ, each named with its count and offset, exit 1
"$Q" verify "$D/models/stories260K-f16" "$G/gpu-fp4dq-f16.safetensors" --quiet > "$S/out"; rc=$?
[ $rc = 1 ] || fail "verify --match cpu of a GPU file: exit $rc, want 1"
[ "$(grep -c 'differs: [0-9]* of [0-9]* bytes, first at byte' "$S/out")" = 4 ] || fail "want 4 differing tensors"
# the table from the environment
QTOOL_RCP_TABLE=$T "$Q" verify "$D/models/stories260K-bf16" "$G/gpu-int8-bf16.safetensors" --match cuda --quiet > /dev/null \
  || fail "QTOOL_RCP_TABLE"
# usage errors (exit 2): no table, a file that is not the table, a bad --match
env -u QTOOL_RCP_TABLE "$Q" verify a b --match cuda 2> "$S/err"; [ $? = 2 ] || fail "no table: want exit 2"
grep -q 'needs the GPU reciprocal table' "$S/err" || fail "no-table message"
head -c 1000 "$T" > "$S/bad.zst"
"$Q" convert "$D/models/stories260K-f16" "$S/o" --match cuda --rcp-table "$S/bad.zst" 2> "$S/err"; [ $? = 2 ] || fail "bad table: want exit 2"
grep -q "bad.zst.*sha256" "$S/err" || fail "bad-table message: $(cat "$S/err")"
[ ! -e "$S/o" ] || fail "output written despite a bad table"
"$Q" convert "$D/models/stories260K-f16" "$S/o" --match gpu 2>/dev/null; [ $? = 2 ] || fail "--match gpu: want exit 2"
"$Q" dequant "$G/gpu-fp4dq-f16.safetensors" "$S/o" --match cuda 2>/dev/null; [ $? = 2 ] || fail "dequant --match: want exit 2"
# convert --match cuda records it; --if-changed tells cpu and cuda apart
"$Q" convert --quiet "$D/models/stories260K-f16" "$S/c" --scheme fp4 --match cuda --rcp-table "$T" || fail "convert --match cuda"
grep -q '"qtool.match":"cuda"' "$S/c/model.safetensors" || fail "qtool.match not recorded"
"$Q" convert "$D/models/stories260K-f16" "$S/c" --scheme fp4 --match cuda --rcp-table "$T" --if-changed 2>&1 | grep -q 'up to date' \
  || fail "--if-changed with the same --match"
"$Q" convert --quiet "$D/models/stories260K-f16" "$S/c" --scheme fp4 --if-changed || fail "--if-changed to cpu"
grep -q '"qtool.match"' "$S/c/model.safetensors" && fail "cpu output still says cuda"
echo "verify: ok"
