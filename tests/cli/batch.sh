#!/usr/bin/env bash
# CLI test of batch conversion (qtool batch-plan + scripts/qtool-batch) on
# copies of stories260K f32/f16/bf16 x nf4/int8: the outputs are the bytes a
# plain `qtool convert` writes; a second run converts nothing; changing one
# input's fingerprint redoes only its outputs; a broken input fails alone
# (exit 1); shards 1/2 + 2/2 do exactly the whole job; an interrupted run
# resumes; bad manifests are refused with exit 2.
set -u
. "$(dirname "$0")/lib/batch.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

mkdir -p "$T/in"
for v in f32 f16 bf16; do cp -r "$D/stories260K-$v" "$T/in/"; done
chmod -R u+w "$T/in"
cat > "$T/m.json" <<'EOF'
{"outputs": "out/{model}-{scheme}",
 "models": [{"name": "f32", "path": "in/stories260K-f32"},
            {"name": "f16", "path": "in/stories260K-f16"},
            {"name": "bf16", "path": "in/stories260K-bf16"}],
 "schemes": ["nf4", {"scheme": "int8"}]}
EOF
OUTS="f32-nf4 f32-int8 f16-nf4 f16-int8 bf16-nf4 bf16-int8"
ids() { for o in $OUTS; do printf '%s %s\n' "$o" "$(stat -c '%i %Y' "$T/out/$o/model.safetensors")"; done; }
col() { # column $2 of summary CSV rows whose model,scheme is $1 (e.g. f32,nf4)
  awk -F, -v k="\"${1%,*}\",\"${1#*,}\"" -v c="$2" '$1 "," $2 == k { print $c }' "$3"
}

# ---- the plan ----------------------------------------------------------------
"$Q" batch-plan "$T/m.json" > "$T/plan" || fail "batch-plan"
[ "$(grep -vc '^#' "$T/plan")" = 6 ] || fail "plan: expected 6 jobs"
grep -q "^#jobs	6	6	1/1$" "$T/plan" || fail "plan: #jobs line"
grep -q "^3	f16	int8	$T/in/stories260K-f16	$T/out/f16-int8	--scheme	int8$" "$T/plan" ||
  fail "plan: job 3 is not f16 x int8 with paths resolved against the manifest's folder"

# ---- first run: six conversions, from another folder, 2 at a time -------------
(cd / && "$B" "$T/m.json" -j 2 --summary "$T/s1") > "$T/r1" 2> "$T/e1" || {
  cat "$T/r1" "$T/e1"; fail "first run"; }
for v in f32 f16 bf16; do
  for s in nf4 int8; do
    "$Q" convert --quiet --scheme $s "$T/in/stories260K-$v" "$T/ref-$v-$s" || fail "reference $v $s"
    cmp -s "$T/ref-$v-$s/model.safetensors" "$T/out/$v-$s/model.safetensors" ||
      fail "$v-$s: bytes differ from a plain qtool convert"
    cmp -s "$T/ref-$v-$s/config.json" "$T/out/$v-$s/config.json" || fail "$v-$s: config.json differs"
    [ -s "$T/out/$v-$s.report.json" ] || fail "$v-$s: no report"
    [ "$(col "$v,$s" 3 "$T/s1.csv")" = converted ] || fail "$v-$s: not 'converted' in the CSV"
    want=$("$Q" inspect --json "$T/out/$v-$s" | tr -d '\n' | sed 's/.*"totals".*"bytes": \([0-9]*\),.*/\1/')
    [ "$(col "$v,$s" 7 "$T/s1.csv")" = "$want" ] || fail "$v-$s: bytes_out in the CSV is not $want"
  done
done
[ "$(col f32,nf4 6 "$T/s1.csv")" = 1040128 ] || fail "f32 bytes_in"
grep -qE '^f32 +nf4 +converted +1040128 +294773 +9\.07 ' "$T/r1" || { cat "$T/r1"; fail "table row f32 nf4"; }
grep -q '^6 jobs: 6 converted, 0 up to date, 0 failed' "$T/r1" || fail "first run tally"
if command -v python3 > /dev/null; then
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["jobs"])==6 and d["converted"]==6 and d["jobs"][0]["bits_per_weight"]>9' \
    "$T/s1.json" || fail "summary JSON"
fi
ids > "$T/ids1"

# ---- second run: nothing to do ----------------------------------------------------
"$B" "$T/m.json" -j 2 --summary "$T/s2" > "$T/r2" 2> "$T/e2" || { cat "$T/r2" "$T/e2"; fail "second run"; }
grep -q '^6 jobs: 0 converted, 6 up to date, 0 failed' "$T/r2" || { cat "$T/r2"; fail "second run converted something"; }
ids > "$T/ids2"
cmp -s "$T/ids1" "$T/ids2" || fail "second run rewrote an output"

# ---- change the f16 input's fingerprint: only its two outputs are redone ------------
# flip the lowest mantissa bit of the first value of the data section (inside
# the first sampled 4 KiB piece; the value stays finite)
F=$T/in/stories260K-f16/model.safetensors
hs=$(od -An -tu8 -N8 "$F" | tr -d ' ')
off=$((8 + hs))
b=$(od -An -tu1 -j "$off" -N1 "$F" | tr -d ' ')
printf "\\$(printf %03o $((b ^ 1)))" | dd of="$F" bs=1 seek="$off" conv=notrunc status=none
[ "$(od -An -tu1 -j "$off" -N1 "$F" | tr -d ' ')" = $((b ^ 1)) ] || fail "could not change the f16 input"
"$B" "$T/m.json" -j 2 --summary "$T/s3" > "$T/r3" 2> "$T/e3" || { cat "$T/r3" "$T/e3"; fail "third run"; }
grep -q '^6 jobs: 2 converted, 4 up to date, 0 failed' "$T/r3" || { cat "$T/r3"; fail "touching f16 did not redo exactly 2"; }
for s in nf4 int8; do [ "$(col "f16,$s" 3 "$T/s3.csv")" = converted ] || fail "f16-$s not redone"; done
ids > "$T/ids3"
[ "$(diff "$T/ids2" "$T/ids3" | grep -c '^>')" = 2 ] || fail "not exactly two outputs rewritten"
diff "$T/ids2" "$T/ids3" | grep '^>' | grep -qv '^> f16-' && fail "an output other than f16's was rewritten"

# ---- a broken input fails alone --------------------------------------------------
cp -r "$T/in/stories260K-f32" "$T/in/broken"
head -c 3000 "$T/in/stories260K-f32/model.safetensors" > "$T/in/broken/model.safetensors"
sed 's|"models": \[|"models": [{"name": "broken", "path": "in/broken"},|' "$T/m.json" > "$T/m2.json"
"$B" "$T/m2.json" -j 2 --summary "$T/s4" > "$T/r4" 2> "$T/e4"
rc=$?
[ $rc = 1 ] || { cat "$T/r4" "$T/e4"; fail "a failed job: exit $rc, expected 1"; }
grep -q '^8 jobs: 0 converted, 6 up to date, 2 failed' "$T/r4" || { cat "$T/r4"; fail "broken input tally"; }
for s in nf4 int8; do
  [ "$(col "broken,$s" 3 "$T/s4.csv")" = failed ] || fail "broken-$s not failed"
  [ -e "$T/out/broken-$s" ] && fail "broken-$s: output left behind"
  [ -s "$T/out/broken-$s.log" ] || fail "broken-$s: no log"
done
grep -E '^broken +nf4 +failed .*model\.safetensors' "$T/r4" > /dev/null || { cat "$T/r4"; fail "the error is not in the table"; }
grep -q '"status": "failed".*"error": ".*safetensors' "$T/s4.json" || fail "the error is not in the JSON"
ls -a "$T/out" | grep -q 'qtool-tmp' && fail "temporary folder left behind"

# ---- shards 1/2 + 2/2 = the whole job, exactly once ------------------------------------
sed 's|out/{model}|sh/{model}|' "$T/m.json" > "$T/m3.json"
for n in 2 3 4; do
  : > "$T/union"
  for i in $(seq 1 $n); do
    "$Q" batch-plan "$T/m3.json" --shard $i/$n | grep -v '^#' >> "$T/union" || fail "plan shard $i/$n"
  done
  sort "$T/union" > "$T/union.s"
  "$Q" batch-plan "$T/m3.json" | grep -v '^#' | sort > "$T/whole.s"
  cmp -s "$T/union.s" "$T/whole.s" || fail "shards of $n do not make the whole plan exactly"
done
"$B" "$T/m3.json" --shard 1/2 --summary "$T/sh1" > "$T/r5" 2>&1 || { cat "$T/r5"; fail "shard 1/2"; }
"$B" "$T/m3.json" --shard 2/2 --summary "$T/sh2" > "$T/r6" 2>&1 || { cat "$T/r6"; fail "shard 2/2"; }
grep -q '^3 jobs: 3 converted' "$T/r5" || fail "shard 1/2 did not convert 3"
grep -q '^3 jobs: 3 converted' "$T/r6" || fail "shard 2/2 did not convert 3"
[ "$(tail -n +2 "$T/sh1.csv" "$T/sh2.csv" | grep -c '^"')" = 6 ] || fail "shard summaries do not hold 6 jobs"
[ "$(tail -qn +2 "$T/sh1.csv" "$T/sh2.csv" | cut -d, -f5 | sort -u | wc -l)" = 6 ] || fail "shards overlap"
"$B" "$T/m3.json" --summary "$T/sh3" > "$T/r7" 2>&1 || fail "whole after shards"
grep -q '^6 jobs: 0 converted, 6 up to date' "$T/r7" || { cat "$T/r7"; fail "shards missed a job"; }

# ---- an interrupted run resumes ---------------------------------------------------------
slow_qtool "$T/slowq" 1
sed 's|out/{model}|int/{model}|' "$T/m.json" > "$T/m4.json"
"$B" "$T/m4.json" -j 1 --qtool "$T/slowq" --summary "$T/s8" > "$T/r8" 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ -d "$T/int/f32-nf4" ] && break; sleep 0.1; done
[ -d "$T/int/f32-nf4" ] || fail "interrupt test: the first job never finished"
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 130 ] || { cat "$T/r8"; fail "interrupted run: exit $rc, expected 130"; }
grep -q 'interrupted' "$T/r8" || fail "interrupted run does not say so"
ls -a "$T/int" | grep -q 'qtool-tmp' && fail "interrupt left a temporary folder"
"$B" "$T/m4.json" -j 2 --summary "$T/s9" > "$T/r9" 2>&1 || { cat "$T/r9"; fail "resume"; }
[ "$(col f32,nf4 3 "$T/s9.csv")" = up-to-date ] || fail "resume redid a finished job"
grep -qE '^6 jobs: [0-5] converted, [1-6] up to date, 0 failed' "$T/r9" || { cat "$T/r9"; fail "resume tally"; }
for o in $OUTS; do cmp -s "$T/out/$o/model.safetensors" "$T/int/$o/model.safetensors" || fail "resumed $o differs"; done

# ---- --bench: the PPL / KL columns, or a note that they are skipped ---------------------
printf 'Once upon a time, there was a little girl named Lily. She loved to play outside.\n' > "$T/text.txt"
"$B" "$T/m.json" --bench "$T/text.txt" --bench-ctx 16 --summary "$T/s10" > "$T/r10" 2> "$T/e10" || { cat "$T/r10" "$T/e10"; fail "--bench run"; }
if "$Q" help bench 2> /dev/null | grep -qE '^ +ppl( |$)'; then
  grep -q '^MODEL .* PPL ' "$T/r10" || fail "--bench: no PPL column"
  grep -q '"ppl": null' "$T/s10.json" && fail "--bench: a job without PPL"
else
  grep -q 'bench ppl.*not available.*skipped' "$T/e10" || { cat "$T/e10"; fail "--bench: no note that the column is skipped"; }
fi

# ---- refusals ---------------------------------------------------------------------------
bad() { # $1: manifest JSON, $2: expected message part
  printf '%s\n' "$1" > "$T/bad.json"
  "$Q" batch-plan "$T/bad.json" > /dev/null 2> "$T/bad.err"; r=$?
  [ $r = 2 ] || fail "bad manifest $1: exit $r, expected 2"
  grep -q -- "$2" "$T/bad.err" || { cat "$T/bad.err"; fail "bad manifest $1: message lacks '$2'"; }
}
bad '{"models": ["a"]}' 'needs a "schemes" array'
bad '{"models": [], "schemes": ["nf4"]}' '"models" is empty'
bad '{"models": ["a"], "schemes": ["nf4"], "extra": 1}' "unknown key 'extra'"
bad '{"models": ["a"], "schemes": ["nf5"]}' "scheme 0 'nf5'"
bad '{"models": ["a"], "schemes": [{"scheme": "int8", "block": 64}]}' 'no "block"'
bad '{"models": ["a", "x/a"], "schemes": ["nf4"]}' "both named 'a'"
bad '{"models": ["a"], "schemes": ["nf4", "nf4"]}' "both named 'nf4'"
bad '{"models": ["a"], "schemes": ["nf4"], "outputs": "o/{model}"}' 'must contain both'
bad '{"models": ["a-b", {"name": "a", "path": "z"}], "schemes": ["nf4", "b-nf4"]}' 'a-b-nf4. is written twice'
bad '{"models": ["a"], "schemes": ["nf4"], "models": ["b"]}' 'duplicate'
bad '[1]' 'expected an object'
"$Q" batch-plan "$T/m.json" --shard 3/2 > /dev/null 2>&1; [ $? = 2 ] || fail "--shard 3/2 accepted"
"$Q" batch-plan "$T/m.json" --shard 0/2 > /dev/null 2>&1; [ $? = 2 ] || fail "--shard 0/2 accepted"
"$Q" batch-plan "$T/nonexistent.json" > /dev/null 2>&1; [ $? = 1 ] || fail "missing manifest: not exit 1"
"$B" "$T/bad.json" > /dev/null 2>&1; [ $? = 2 ] || fail "qtool-batch: bad manifest not exit 2"
"$B" "$T/m.json" -j 0 > /dev/null 2>&1; [ $? = 2 ] || fail "qtool-batch: -j 0 accepted"
"$B" "$T/m.json" --shard x > /dev/null 2>&1; [ $? = 2 ] || fail "qtool-batch: --shard x accepted"
"$B" "$T/m.json" --dry-run | grep -q '^6 of 6 jobs; nothing run' || fail "--dry-run"
echo ok
