#!/usr/bin/env bash
# Byte-identity guard (issue 13 acceptance): converts stories260K (f32, f16,
# bf16) in every scheme, plus a sharded and a dequantized output, and checks
# the sha256 of every output file against notes/13-baseline-sha256.txt,
# recorded with the code before the output-format seam. Any changed byte
# fails. Regenerate the list only for an intended format change:
#   QT_HASH_RECORD=1 bash tests/cli/convert_hashes.sh
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
LIST=$(cd "$(dirname "$0")/../.." && pwd)/notes/13-baseline-sha256.txt
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# one output folder per case: <src>-<scheme>
conv() { "$Q" convert --quiet "$@" || fail "convert $*"; }
for src in f32 f16 bf16; do
  in="$D/stories260K-$src"
  conv --scheme nf4 "$in" "$T/$src-nf4"
  conv --scheme nf4 --no-double-quant "$in" "$T/$src-nf4-nodq"
  conv --scheme fp4 "$in" "$T/$src-fp4"
  conv --scheme fp4 --no-double-quant "$in" "$T/$src-fp4-nodq"
  conv --scheme int8 "$in" "$T/$src-int8"
  conv --scheme q8 "$in" "$T/$src-q8"
  conv --scheme bf16 "$in" "$T/$src-bf16"
done
conv --scheme nf4 --max-shard-size 100K "$D/stories260K-f32" "$T/f32-nf4-sharded"
"$Q" dequant --quiet --dtype fp32 "$T/bf16-nf4" "$T/bf16-nf4-deq" || fail "dequant"

(cd "$T" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | xargs sha256sum) > "$T/now.txt"
if [ "${QT_HASH_RECORD:-0}" = 1 ]; then cp "$T/now.txt" "$LIST"; echo "recorded $LIST"; exit 0; fi
[ -f "$LIST" ] || fail "no baseline list $LIST"
diff "$LIST" "$T/now.txt" > "$T/diff" || { cat "$T/diff"; fail "output bytes differ from the baseline"; }
# the two-pass path (a prepass for the offsets, then direct shard writes) that --calib takes
# gives the same bytes as the single read above
TXT=${QT_DATA:-../shared/data}/text/tinystories_sample.txt
if [ -f "$TXT" ]; then
  for shard in none 100K; do
    ref=$T/f32-nf4 opt=""; [ $shard = 100K ] && ref=$T/f32-nf4-sharded opt="--max-shard-size 100K"
    QT_CACHE_DIR=$T/cache "$Q" convert --quiet --calib "$TXT" --max-output-error 1e9 $opt \
      "$D/stories260K-f32" "$T/calib-$shard" 2> "$T/err" || fail "calib: $(cat "$T/err")"
    for f in "$ref"/*; do cmp "$f" "$T/calib-$shard/${f##*/}" || fail "two-pass bytes differ: ${f##*/}"; done
  done
fi
echo "ok: $(wc -l < "$LIST") files identical"
