#!/usr/bin/env bash
# convert --format gguf --calib TEXT --budget BPW (issue 18, GGUF part): each
# decoder Linear's type is chosen among its candidates by the measured
# output error; refusals exit 2 with the feasible range and write nothing;
# the dry run plans what the run writes; a larger budget never lowers a
# type; the achieved bits stay within the budget; the bytes do not depend
# on threads or ISA; the files run in qtool
# and the larger budget is not farther (KL) from the original.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}
M=$D/models/stories260K-f32
CAL=$D/text/tinystories_sample.txt
[ -d "$M" ] && [ -f "$CAL" ] || { echo "skipped: $M or $CAL is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
conv() { "$Q" convert --quiet "$M" "$@" --calib "$CAL" --calib-cache "$T/cache" 2>"$T/err"; }

# refusals: exit 2, the range printed, nothing written
"$Q" convert --quiet "$M" "$T/x.gguf" --budget 6 2>"$T/err"; [ $? = 2 ] || fail "--budget without --calib"
grep -q "needs --calib" "$T/err" || fail "no --calib message: $(cat "$T/err")"
conv "$T/x.gguf" --calib-tokens 64; [ $? = 2 ] || fail "--calib without --budget accepted"
conv "$T/x.gguf" --budget 5; [ $? = 2 ] || fail "budget below the cheapest candidates accepted"
grep -q "feasible range \[5\.5000, 8\.5000\]" "$T/err" || fail "no feasible range: $(cat "$T/err")"
[ ! -e "$T/cache" ] || fail "a refused budget ran the calibration pass"
conv "$T/x.gguf" --budget 9; [ $? = 2 ] || fail "budget above all q8_0 accepted"
grep -q "feasible range \[5\.5000, 8\.5000\]" "$T/err" || fail "no feasible range: $(cat "$T/err")"
conv "$T/x.gguf" --budget 6 --scheme f16; [ $? = 2 ] || fail "--budget with a plain scheme accepted"
conv "$T/x.gguf" --budget abc; [ $? = 2 ] || fail "--budget abc accepted"
ls "$T" | grep -q "^x\.gguf" && fail "a refusal left an output: $(ls "$T")"

# dry run: the plan with the measured errors, nothing written
conv "$T/x.gguf" --budget 6.5 --dry-run > "$T/plan" || fail "dry run: $(cat "$T/err")"
[ ! -e "$T/x.gguf" ] || fail "dry run wrote OUT"
grep -q "^budget: 6\.[0-9]* bits per weight over 30 matrices (asked 6.5" "$T/plan" || fail "dry run: $(tail -2 "$T/plan")"
grep -q "rel.err: .*\*Q" "$T/plan" || fail "dry run prints no measured errors"

# the runs (threads differ: the choice must not)
conv "$T/b65.gguf" --budget 6.5 --report "$T/b65.json" --threads 1 || fail "budget 6.5: $(cat "$T/err")"
conv "$T/b8.gguf" --budget 8 --report "$T/b8.json" --threads 2 || fail "budget 8: $(cat "$T/err")"
# the same bytes for any thread count and SIMD path (the choice included)
conv "$T/b8r.gguf" --budget 8 --threads 1 --isa ref || fail "budget 8, ref: $(cat "$T/err")"
cmp -s "$T/b8.gguf" "$T/b8r.gguf" || fail "budget 8: other bytes with --threads 1 --isa ref"
types() { "$Q" inspect "$1" | awk '/^blk\.|^token_embd|^output/ { print $1, $2 }'; }
types "$T/b65.gguf" > "$T/t65"; types "$T/b8.gguf" > "$T/t8"
awk '/^blk\.|^token_embd|^output/ { print $1, $2 }' "$T/plan" | diff - "$T/t65" > /dev/null ||
  fail "the dry run planned other types than the run wrote"
# a larger budget never gives a tensor a smaller type (types by bytes)
rank() { case $1 in Q4_K) echo 1;; Q5_0) echo 2;; Q5_K) echo 2;; Q5_1) echo 3;; Q6_K) echo 4;; Q8_0) echo 5;; *) echo 9;; esac; }
raised=0
while read -r name ta && read -r _ tb <&3; do
  [ "$(rank "$tb")" -ge "$(rank "$ta")" ] || fail "$name: $ta at budget 6.5, $tb at budget 8"
  [ "$ta" = "$tb" ] || raised=$((raised + 1))
done < "$T/t65" 3< "$T/t8"
[ "$raised" -gt 0 ] || fail "budget 8 raised no tensor over budget 6.5"
# achieved bits within the budget, recorded in the report and the metadata
ach() { grep -o '"achieved_bpw": [0-9.e+-]*' "$1" | awk '{ print $2 }'; }
awk -v a="$(ach "$T/b65.json")" 'BEGIN { exit !(a <= 6.5 && a >= 5.5) }' || fail "achieved $(ach "$T/b65.json") > 6.5"
awk -v a="$(ach "$T/b8.json")" 'BEGIN { exit !(a <= 8 && a > 6.5) }' || fail "achieved $(ach "$T/b8.json") not in (6.5, 8]"
grep -q '"chosen": "Q8_0"' "$T/b8.json" || fail "no decision table in the report"
"$Q" inspect "$T/b8.gguf" | grep -q 'qtool.budget = "bpw=8;achieved_bpw=' || fail "no qtool.budget metadata"
# the files run in qtool; the larger budget is no farther from the original
"$Q" generate "$T/b8.gguf" -n 8 > /dev/null 2>&1 || fail "generate b8.gguf"
"$Q" bench ppl "$M" "$T/b65.gguf" "$T/b8.gguf" --text "$CAL" --ctx 128 --chunks 4 --no-cache -q \
  --json "$T/ppl.json" > /dev/null 2>&1 || fail "bench ppl"
kl=$(grep -o '"kl_mean": [0-9.e+-]*' "$T/ppl.json" | awk '{ print $2 }' | tr '\n' ' ')
set -- $kl
[ $# = 3 ] || fail "bench ppl: $kl"
awk -v a="$2" -v b="$3" 'BEGIN { exit !(b <= a && a > 0) }' || fail "KL at budget 8 ($3) above budget 6.5 ($2)"
echo ok
