#!/usr/bin/env bash
# Issue 12, what convert / dequant do with OUT (docs/RELIABILITY.md,
# "Careless and hostile use"): a folder that is not a previous qtool output
# is never replaced (item 1), an empty OUT is a usage error before any work
# (10), an OUT name of 250 bytes works and long messages are not cut (9),
# the losing side of a race for OUT says another process wrote it (16).
# Each case: the exit code, a message naming the file and the cause, nothing
# lost, no temporary folder left.
set -u
. "$(dirname "$0")/lib/reliability.bash"
need_data
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

# item 1: a user's folder survives --if-changed, --force and dequant --force
mkdir "$T/ud" && echo x > "$T/ud/thesis.txt"
for args in "convert --if-changed" "convert --force" "convert --force --scheme q8"; do
  expect 2 "holds 'thesis.txt'.*not a previous qtool output" "$Q" $args --quiet "$M" "$T/ud"
  [ "$(cat "$T/ud/thesis.txt")" = x ] && [ "$(ls "$T/ud")" = thesis.txt ] || fail "$args: ud changed"
done
"$Q" convert --quiet "$M" "$T/q" || fail "convert q"
expect 2 "holds 'thesis.txt'" "$Q" dequant --force --quiet "$T/q" "$T/ud"
[ -f "$T/ud/thesis.txt" ] || fail "dequant: thesis.txt lost"
# ... and a folder holding weights without qtool provenance
mkdir "$T/hf" && cp "$M/model.safetensors" "$M/config.json" "$T/hf/"
expect 2 "'model.safetensors' has no qtool provenance" "$Q" convert --force --quiet "$M" "$T/hf"
# ... while a previous qtool output and an empty folder are replaced
"$Q" convert --force --quiet --scheme q8 "$M" "$T/q" || fail "replace a qtool output"
mkdir "$T/e" && { "$Q" convert --force --quiet "$M" "$T/e" || fail "replace an empty folder"; }
no_tmp "$T"

# item 10: an empty OUT is a usage error, before any work
expect 2 "OUT is empty" "$Q" convert --quiet "$M" ''
expect 2 "OUT is empty" "$Q" dequant --quiet "$T/q" ''

# item 9: OUT names of 240-255 bytes (valid for mkdir) convert
for n in 240 255; do
  long=$(printf 'L%.0s' $(seq $n))
  (cd "$T" && "$Q" convert --quiet "$M" "$long") || fail "OUT of $n bytes"
  [ -f "$T/$long/model.safetensors" ] || fail "OUT of $n bytes: no model"
  # a message naming two long paths is not cut: the reason is at its end
  (cd "$T" && "$Q" convert --quiet "$M" "$long") 2> "$T/err"
  grep -q "$long' exists (--force replaces it)" "$T/err" || fail "message cut: $(cat "$T/err")"
done
no_tmp "$T"

# item 16: another process creates OUT while this one converts; the loser says so
"$Q" bench synth "$T/big" --hidden 512 --intermediate 1376 --layers 4 --heads 8 --kv-heads 8 \
  --vocab 2048 --dtype fp32 > /dev/null 2>&1 || fail "bench synth"
"$Q" convert --quiet --threads 1 "$T/big" "$T/race" 2> "$T/err" & pid=$!
for _ in $(seq 1 2000); do ls -a "$T" | grep -q '^\.race\.qtool-tmp' && break; sleep 0.005; done
mkdir "$T/race" && echo other > "$T/race/model.safetensors"
wait $pid; rc=$?
[ $rc = 1 ] && grep -q "'$T/race' was written by another process meanwhile" "$T/err" \
  || fail "race: exit $rc: $(cat "$T/err")"
[ "$(cat "$T/race/model.safetensors")" = other ] || fail "race: the other output was touched"
no_tmp "$T"
echo ok
