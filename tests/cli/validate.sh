#!/usr/bin/env bash
# CLI test of calibration validation: `qtool convert --calib` (an honest NF4
# conversion passes; a strict --max-output-error fails with exit 1, no OUT
# and each offending tensor named; --fallback passes and lists its tensors
# in llm_int8_skip_modules), `qtool validate` (on qtool's output, on the
# bitsandbytes golden output, and on a copy whose codes are scrambled in one
# tensor: caught and named), the cache (reused, rebuilt when the text
# changes, rebuilt when truncated) and the JSON / HTML reports.
set -u
Q=${QTOOL:-build/qtool}
DATA=${QT_DATA:-../shared/data}
M=$DATA/models/stories260K-f32
TXT=$DATA/text/tinystories_sample.txt
[ -d "$M" ] && [ -f "$TXT" ] || { echo "skipped: $M or $TXT is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export QT_CACHE_DIR=$T/cache
fail() { echo "FAIL: $*"; exit 1; }

# an honest conversion passes its default thresholds; the cache is new, then reused
"$Q" convert "$M" "$T/nf4" --quiet --calib "$TXT" --calib-report "$T/c.json" --html "$T/c.html" \
  2> "$T/err" || fail "honest nf4 conversion failed: $(cat "$T/err")"
grep -q '"ok": true' "$T/c.json" || fail "report not ok"
grep -q '"cache": "new"' "$T/c.json" || fail "first run did not build the cache"
grep -q '<svg' "$T/c.html" && ! grep -q '<script' "$T/c.html" || fail "html report"
"$Q" validate "$M" "$T/nf4" --calib "$TXT" --report "$T/v.json" > "$T/out" 2> "$T/err" \
  || fail "validate of an honest conversion: rc $?"
grep -q 'cache hit' "$T/err" || fail "cache not reused: $(cat "$T/err")"
grep -q '35 pass, 0 fallback, 0 fail' "$T/out" || fail "validate summary: $(tail -1 "$T/out")"
grep -q '"per_layer"' "$T/v.json" || fail "json report lacks per_layer"

# the text changes: rebuilt; a truncated cache: rebuilt
cp "$TXT" "$T/text.txt"
"$Q" validate "$M" "$T/nf4" --calib "$T/text.txt" > /dev/null 2> "$T/err" || fail "validate"
grep -q 'cache new' "$T/err" || fail "expected a new cache: $(cat "$T/err")"
head -c 2000 "$DATA/text/wiki.test.raw" >> "$T/text.txt"
"$Q" validate "$M" "$T/nf4" --calib "$T/text.txt" > /dev/null 2> "$T/err" || fail "validate"
grep -q 'cache stale' "$T/err" || fail "changed text did not rebuild: $(cat "$T/err")"
for f in "$T"/cache/calib-*.qtc; do truncate -s -50 "$f"; done
"$Q" validate "$M" "$T/nf4" --calib "$T/text.txt" > /dev/null 2> "$T/err" || fail "validate"
grep -q 'cache damaged' "$T/err" || fail "truncated cache not rebuilt: $(cat "$T/err")"

# the output of transformers + bitsandbytes
"$Q" validate "$M" "$DATA/golden/transformers-bnb-nf4-dq" --calib "$TXT" --quiet > "$T/out" 2>&1 \
  || fail "bnb golden: rc $?: $(cat "$T/out")"

# scrambled codes in one tensor: caught and named
if command -v python3 > /dev/null; then
  cp -r "$T/nf4" "$T/bad"
  python3 - "$T/bad/model.safetensors" model.layers.2.mlp.up_proj.weight <<'PY'
import json, random, struct, sys
path, name = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
    a, b = hdr[name]["data_offsets"]
    f.seek(8 + n + a)
    rnd = random.Random(1)
    f.write(bytes(rnd.randrange(256) for _ in range(b - a)))
PY
  "$Q" validate "$M" "$T/bad" --calib "$TXT" --quiet > "$T/out" 2> "$T/err"
  rc=$?
  [ $rc = 1 ] || fail "scrambled codes: rc $rc, expected 1"
  grep -q "tensor 'model.layers.2.mlp.up_proj.weight'" "$T/err" || fail "tensor not named: $(cat "$T/err")"
  [ "$(grep -c "^qtool: error: tensor" "$T/err")" = 1 ] || fail "more than one tensor blamed"
fi

# a strict threshold: exit 1, no OUT, every offender named
"$Q" convert "$M" "$T/strict" --quiet --calib "$TXT" --max-output-error 0.1 2> "$T/err"
rc=$?
[ $rc = 1 ] || fail "strict threshold: rc $rc, expected 1"
[ ! -e "$T/strict" ] || fail "OUT written although the check failed"
grep -q "relative output error" "$T/err" || fail "no per-tensor message: $(cat "$T/err")"
n_bad=$(grep -c "^qtool: error: tensor '" "$T/err")
cp "$T/err" "$T/err.strict"
[ "$n_bad" -gt 0 ] || fail "no tensor named"

# --fallback keeps exactly those tensors in the compute dtype
"$Q" convert "$M" "$T/fb" --quiet --calib "$TXT" --max-output-error 0.1 --fallback \
  --calib-report "$T/fb.json" 2> "$T/err" || fail "fallback conversion: $(cat "$T/err")"
n_fb=$(grep -o '"verdict": "fallback"' "$T/fb.json" | wc -l)
[ "$n_fb" = "$n_bad" ] || fail "$n_fb fallbacks, $n_bad failures before"
for mod in $(sed -n "s/^qtool: error: tensor '\([^']*\)\.weight'.*/\1/p" "$T/err.strict"); do
  grep -q "\"$mod\"" "$T/fb/config.json" || fail "$mod not in llm_int8_skip_modules"
  grep -q "\"name\": \"$mod.weight\", \"from\"" "$T/fb.json" || fail "$mod not a reported fallback"
done
"$Q" validate "$M" "$T/fb" --calib "$TXT" --max-output-error 0.1 > "$T/out" 2>&1 \
  || fail "fallback model does not pass: $(tail -3 "$T/out")"
grep -q "0 fail, $n_fb unchecked" "$T/out" || fail "kept tensors: $(tail -1 "$T/out")"

# usage
"$Q" validate "$M" "$T/nf4" > /dev/null 2>&1; [ $? = 2 ] || fail "validate without --calib: expected 2"
"$Q" convert "$M" "$T/x" --fallback > /dev/null 2>&1; [ $? = 2 ] || fail "--fallback without --calib"
echo "ok"
