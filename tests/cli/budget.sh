#!/usr/bin/env bash
# convert --calib TEXT --budget BPW (issue 18): the modules with the largest
# measured output error per byte are kept in the compute dtype until the
# budget is spent; the choice is recorded (report, metadata,
# llm_int8_skip_modules); a larger budget keeps a superset; bad budgets
# exit 2 with the feasible range and write nothing.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}
M=$D/models/stories260K-bf16
CAL=$D/text/tinystories_sample.txt
[ -d "$M" ] && [ -f "$CAL" ] || { echo "skipped: $M or $CAL is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
conv() { "$Q" convert --quiet "$M" "$@" --calib "$CAL" --calib-cache "$T/cache" 2>"$T/err"; }

# refusals: exit 2, nothing written
"$Q" convert --quiet "$M" "$T/x" --budget 6 2>"$T/err"; [ $? = 2 ] || fail "--budget without --calib"
conv "$T/x" --budget 3; [ $? = 2 ] || fail "budget below nf4 accepted"
grep -q "feasible range \[5\.6[0-9]*, 16\.0000\]" "$T/err" || fail "no feasible range: $(cat "$T/err")"
conv "$T/x" --budget 17; [ $? = 2 ] || fail "budget above bf16 accepted"
conv "$T/x" --budget 6 --fallback; [ $? = 2 ] || fail "--budget with --fallback accepted"
[ ! -e "$T/x" ] || fail "a refused budget left an output"

# dry run: the plan and the achieved bits, nothing written
conv "$T/x" --budget 8 --dry-run > "$T/plan" || fail "dry run: $(cat "$T/err")"
[ ! -e "$T/x" ] || fail "dry run wrote OUT"
grep -q "^budget: 7\.[0-9]* bits per weight" "$T/plan" || fail "dry run: $(tail -2 "$T/plan")"
n_plan=$(grep -c "fallback nf4+dq->bf16: budget" "$T/plan")

# the runs
"$Q" convert --quiet "$M" "$T/plain" || fail "plain convert"
conv "$T/b7" --budget 7 --report "$T/b7.json" || fail "budget 7: $(cat "$T/err")"
conv "$T/b8" --budget 8 --report "$T/b8.json" || fail "budget 8: $(cat "$T/err")"
kept() { grep -o '"tensor": "[^"]*", "sensitivity": [^,]*, "rank": [0-9]*, "bytes": [0-9]*, "decision": "bfloat16"' "$1" \
         | sed 's/"tensor": "\([^"]*\)".*/\1/' | sort; }
kept "$T/b7.json" > "$T/k7"; kept "$T/b8.json" > "$T/k8"
[ "$(wc -l < "$T/k8")" = "$n_plan" ] || fail "dry run kept $n_plan, the run $(wc -l < "$T/k8")"
[ -s "$T/k7" ] || fail "budget 7 kept nothing"
comm -23 "$T/k7" "$T/k8" | grep -q . && fail "budget 8 does not keep what budget 7 kept"
[ "$(wc -l < "$T/k8")" -gt "$(wc -l < "$T/k7")" ] || fail "budget 8 kept no more than 7"
# achieved bits within the budget
awk '/"achieved_bpw"/ { match($0, /"achieved_bpw": [0-9.]+/); v = substr($0, RSTART + 16, RLENGTH - 16) + 0
       if (v > 8 || v < 7) exit 1 }' "$T/b8.json" || fail "achieved bpw outside (7, 8]"
# every kept module is in llm_int8_skip_modules; the metadata names the budget
while read -r t; do
  grep -q "\"${t%.weight}\"" "$T/b8/config.json" || fail "$t kept but not in llm_int8_skip_modules"
done < "$T/k8"
grep -q "qtool.budget" "$T/b8/model.safetensors" || fail "no qtool.budget metadata"
# the report ranks the kept modules (the order of the greedy fill is not
# checked here: a module that does not fit is passed over, so a kept one
# may rank below a quantized one)
awk '/"decision": "bfloat16"/ {
       match($0, /"rank": [0-9]+/); r = substr($0, RSTART + 8, RLENGTH - 8) + 0
       if (r > maxk) maxk = r }
     END { exit !(maxk > 0) }' "$T/b8.json" || fail "no ranks in the report"
echo ok
