#!/usr/bin/env bash
# make demo: qtool's main job on a sample model (MODEL=DIR for another):
# convert it to a QLoRA-ready NF4 directory, show what was written and
# what it cost, and check the quantized model still speaks.
set -eu
BUILD=${BUILD:-build}
MODEL=${MODEL:-../shared/data/models/stories260K-f32}
OUT=${OUT:-$BUILD/demo/$(basename "$MODEL")-nf4}
Q="$BUILD/qtool"
if [ ! -d "$MODEL" ] && [ ! -f "$MODEL" ]; then
  echo "demo: no model at '$MODEL'; see samples/README.md for where to get one, then: make demo MODEL=DIR" >&2
  exit 2
fi
mkdir -p "$(dirname "$OUT")"
echo "== qtool convert $MODEL $OUT --report $OUT.report.json"
"$Q" convert "$MODEL" "$OUT" --force --report "$OUT.report.json"
echo
echo "== qtool inspect $OUT"
"$Q" inspect "$OUT" | sed -n '1,3p;/^NAME/,+4p;/^total/p'
if "$Q" help generate >/dev/null 2>&1 && [ -f "$OUT/tokenizer.json" -o -f "$OUT/tokenizer.model" ]; then
  echo
  echo "== qtool generate $OUT -n 64"
  "$Q" generate "$OUT" -n 64 || true
  echo
fi
