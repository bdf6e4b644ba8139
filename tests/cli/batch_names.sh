#!/usr/bin/env bash
# CLI test of issue 12 items 11 and 12 for scripts/qtool-batch:
# - manifest names: a model path with a control character gives valid JSON
#   (escaped); a model named '-' with outputs {model}-{scheme} converts (OUT
#   '--nf4' is not read as an option); a scheme named 'x.log' whose output
#   would be another job's log is refused by batch-plan, as is a summary
#   that is a job's file;
# - kill -9 of qtool-batch: its workers stop, its temporary folder goes, and
#   an immediate rerun converts every job (no "Directory not empty").
set -u
. "$(dirname "$0")/lib/batch.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export TMPDIR=$T/tmp
mkdir -p "$T/tmp"

# ---- a model named '-' and a path with a control character (0x01) ----------------
cp -r "$D/stories260K-f32" "$T/-"
cp -r "$D/stories260K-f32" "$T/a$(printf '\001')b"
chmod -R u+w "$T"
printf '{"models": ["-", {"name": "ctl", "path": "a\\u0001b"}], "schemes": ["nf4"]}\n' > "$T/m.json"
(cd "$T" && "$B" m.json --summary s1 > r1 2> e1) || { cat "$T/r1" "$T/e1"; fail "run with '-' and 0x01"; }
[ -f "$T/--nf4/model.safetensors" ] || fail "model '-': no output '--nf4'"
[ -f "$T/--nf4.log" ] || fail "model '-': no log '--nf4.log'"
"$Q" convert --quiet --scheme nf4 "$T/-" "$T/ref" || fail "reference convert"
cmp -s "$T/ref/model.safetensors" "$T/--nf4/model.safetensors" || fail "'--nf4' differs from a plain convert"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["jobs"][1]["input"].endswith("a\u0001b"), d["jobs"][1]["input"]; assert d["converted"]==2' \
  "$T/s1.json" || fail "summary JSON with a control character is not valid or lost it"
grep -q "$(printf '\001')" "$T/s1.json" && fail "raw 0x01 in the JSON"

# ---- collisions of a job's files, and of the summary ---------------------------------
printf '{"models": ["m"], "schemes": ["nf4", {"scheme": "nf4", "name": "nf4.log"}]}\n' > "$T/c.json"
"$Q" batch-plan "$T/c.json" > /dev/null 2> "$T/c.err"; rc=$?
[ $rc = 2 ] || fail "log collision: batch-plan exit $rc, expected 2"
grep -q "m-nf4.log' is written twice: as the log of job 0 (model 'm', scheme 'nf4') and as the output of job 1" "$T/c.err" ||
  { cat "$T/c.err"; fail "log collision message"; }
"$B" "$T/c.json" > /dev/null 2>&1; [ $? = 2 ] || fail "qtool-batch ran a manifest with a log collision"
printf '{"models": ["m"], "schemes": [{"scheme": "nf4", "name": "x.csv"}], "outputs": "{model}{scheme}"}\n' > "$T/d.json"
(cd "$T" && "$B" d.json --summary mx > /dev/null 2> d.err); rc=$?
[ $rc = 2 ] || fail "summary collision: exit $rc, expected 2"
grep -q "summary 'mx.csv' is also a file a job writes" "$T/d.err" || { cat "$T/d.err"; fail "summary collision message"; }
[ -e "$T/mx.csv" ] && fail "summary collision: something written"

# ---- kill -9 of the batch: no orphans, no temporary folder, a clean rerun ------------
for i in 1 2 3; do cp -r "$D/stories260K-f32" "$T/k$i"; done
chmod -R u+w "$T"
printf '{"outputs": "ko/{model}-{scheme}", "models": ["k1", "k2", "k3"], "schemes": ["nf4", "int8"]}\n' > "$T/k.json"
slow_qtool "$T/slowq" 2
rm -rf "$T/tmp"/*
"$B" "$T/k.json" -j 4 --qtool "$T/slowq" --summary "$T/sk" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 50); do pgrep -f "slowq convert" > /dev/null && break; sleep 0.1; done
pgrep -f "slowq convert" > /dev/null || fail "kill -9 test: no worker started"
kill -9 $pid 2> /dev/null
wait $pid 2> /dev/null || true
# an immediate rerun waits for the old workers (lock on each job's log)
"$B" "$T/k.json" -j 4 --summary "$T/sk2" > "$T/rk" 2>&1 || { cat "$T/rk"; fail "rerun after kill -9"; }
grep -q '^6 jobs: 6 converted, 0 up to date, 0 failed' "$T/rk" || { cat "$T/rk"; fail "rerun after kill -9: not 6 converted"; }
for _ in $(seq 1 30); do pgrep -f "$T/slowq" > /dev/null || break; sleep 0.1; done
pgrep -f "$T/slowq" > /dev/null && fail "workers of the killed batch still run"
pgrep -f "$T/k.json" > /dev/null && fail "a process of the killed batch still runs"
for _ in $(seq 1 30); do ls "$T/tmp" | grep -q qtool-batch || break; sleep 0.1; done
ls "$T/tmp" | grep -q "qtool-batch" && fail "temporary folder of the killed batch left: $(ls "$T/tmp")"
ls -a "$T/ko" | grep -q 'qtool-tmp' && fail "convert temporary folder left"
[ -e "$T/sk.csv" ] && fail "the killed batch wrote a summary"
echo ok
