#!/usr/bin/env bash
# tests/cli/bench_ppl.sh: `qtool bench ppl` on stories260K and
# text/tinystories_sample.txt: f32 against fp16, q8 and nf4 made by
# `qtool convert`: the table, JSON and SVG; BASE read from the cache on a
# second run with the same numbers; a model against itself gives KL 0 and
# 100% agreement; 1 and 2 threads give the same perplexity; --score all;
# usage errors exit 2. Exit 0 pass, 77 skip, other fail.
set -u
QTOOL=${QTOOL:-build/qtool}
DATA=${QT_DATA:-../shared/data}
MODEL="$DATA/models/stories260K-f32"
TEXT="$DATA/text/tinystories_sample.txt"
[ -d "$MODEL" ] && [ -f "$TEXT" ] || { echo "no $MODEL or $TEXT"; exit 77; }
[ -x "$QTOOL" ] || { echo "no $QTOOL"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for s in fp16 q8 nf4; do
  "$QTOOL" convert --quiet --scheme "$s" "$MODEL" "$tmp/$s" >/dev/null 2>&1 || fail "convert $s"
done

run() { "$QTOOL" bench ppl "$@" --text "$TEXT" --ctx 128 --cache "$tmp/cache" -q; }

run "$MODEL" "$tmp/fp16" "$tmp/q8" "$tmp/nf4" --json "$tmp/a.json" --plot "$tmp/a.svg" \
  >"$tmp/a.txt" 2>"$tmp/a.err" || { cat "$tmp/a.err"; fail "bench ppl exit $?"; }
grep -q "llama-perplexity protocol" "$tmp/a.txt" || fail "no protocol line"
grep -q "computed and cached" "$tmp/a.txt" || fail "BASE not computed the first time"
for s in fp16 q8 nf4; do grep -q "$tmp/$s" "$tmp/a.txt" || fail "no row for $s"; done
[ "$(grep -c '"path"' "$tmp/a.json")" = 4 ] || fail "JSON does not hold 4 models"
grep -q '"score": "half"' "$tmp/a.json" || fail "JSON: score"
head -c 5 "$tmp/a.svg" | grep -q '<?xml' && grep -q '</svg>' "$tmp/a.svg" || fail "SVG not written"
[ "$(grep -o '<circle' "$tmp/a.svg" | wc -l)" = 8 ] || fail "SVG: expected 2 x 4 points"

# KL of each row: f16 tiny, nf4 clearly larger than q8
kl() { grep "\"path\": \"$1\"" "$tmp/$2" | sed 's/.*"kl_mean": \([^,]*\),.*/\1/'; }
ppl() { grep "\"path\": \"$1\"" "$tmp/$2" | sed 's/.*"ppl": \([^,]*\),.*/\1/'; }
awk -v a="$(kl "$tmp/fp16" a.json)" -v b="$(kl "$tmp/q8" a.json)" -v c="$(kl "$tmp/nf4" a.json)" \
  'BEGIN { exit !(a > 0 && a < 1e-5 && b > a && b < 2e-3 && c > 10 * b && c < 0.5) }' ||
  fail "KL out of bounds: fp16 $(kl "$tmp/fp16" a.json) q8 $(kl "$tmp/q8" a.json) nf4 $(kl "$tmp/nf4" a.json)"

# second run: BASE from the cache, same numbers
run "$MODEL" "$tmp/nf4" --json "$tmp/b.json" >"$tmp/b.txt" 2>&1 || fail "second run"
grep -q "read from the cache" "$tmp/b.txt" || fail "BASE not read from the cache"
grep -q '"from_cache": true' "$tmp/b.json" || fail "JSON: from_cache"
[ "$(kl "$tmp/nf4" a.json)" = "$(kl "$tmp/nf4" b.json)" ] || fail "cached run differs"
[ "$(ppl "$MODEL" a.json)" = "$(ppl "$MODEL" b.json)" ] || fail "cached BASE ppl differs"

# a model against itself; --json - prints JSON only
run "$MODEL" "$MODEL" --json - >"$tmp/self.json" 2>/dev/null || fail "self run"
head -c 1 "$tmp/self.json" | grep -q '{' || fail "--json - did not print JSON only"
[ "$(grep -c '"kl_max": 0, "top1": 1,' "$tmp/self.json")" = 2 ] || fail "self: KL not 0 / top1 not 1"

# 1 and 2 threads: identical perplexity (no cache: both evaluate)
"$QTOOL" bench ppl "$MODEL" "$tmp/nf4" --text "$TEXT" --ctx 128 --no-cache -q --threads 1 \
  --json "$tmp/t1.json" >/dev/null || fail "threads 1"
"$QTOOL" bench ppl "$MODEL" "$tmp/nf4" --text "$TEXT" --ctx 128 --no-cache -q --threads 2 \
  --json "$tmp/t2.json" >/dev/null || fail "threads 2"
for m in "$MODEL" "$tmp/nf4"; do
  [ "$(ppl "$m" t1.json)" = "$(ppl "$m" t2.json)" ] || fail "threads change PPL of $m"
  [ "$(kl "$m" t1.json)" = "$(kl "$m" t2.json)" ] || fail "threads change KL of $m"
done

# --score all, --chunks
run "$MODEL" --score all --chunks 3 >"$tmp/all.txt" 2>&1 || fail "--score all"
grep -q "3 chunks.*positions 0..126 (127 per chunk, 381 in all; --score all" "$tmp/all.txt" ||
  { cat "$tmp/all.txt"; fail "--score all protocol line"; }

# usage errors and bad input
"$QTOOL" bench ppl "$MODEL" >/dev/null 2>&1; [ $? = 2 ] || fail "no --text: expected 2"
"$QTOOL" bench ppl --text "$TEXT" >/dev/null 2>&1; [ $? = 2 ] || fail "no model: expected 2"
run "$MODEL" --score some >/dev/null 2>&1; [ $? = 2 ] || fail "bad --score: expected 2"
run "$MODEL" --ctx 2 >/dev/null 2>&1; [ $? = 2 ] || fail "--ctx 2: expected 2"
"$QTOOL" bench ppl "$MODEL" --text "$tmp/none.txt" >/dev/null 2>&1; [ $? = 2 ] || fail "missing text"
run "$tmp/none" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || [ $rc = 2 ] || fail "missing model: exit $rc"
"$QTOOL" bench ppl -h | grep -q "llama-perplexity" || fail "-h"
echo ok
