#!/usr/bin/env bash
# CLI test of inspect on the shared stories260K copies and its GGUF, against
# the facts in ../shared/data/README.md; bad paths exit non-zero.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
for v in f32 f16 bf16; do
  j=$("$Q" inspect --json "$D/stories260K-$v") || fail "inspect $v"
  echo "$j" | grep -q '"tensors": 47, "stored_tensors": 47, "parameters": 260032' || fail "$v totals"
  "$Q" inspect "$D/stories260K-$v" | grep -q '^config: LlamaForCausalLM: hidden 64' || fail "$v arch line"
done
"$Q" inspect --json "$D/stories260K-gguf/stories260K.gguf" | grep -q '"tensors": 48, "stored_tensors": 48' || fail "gguf"
"$Q" inspect --stats "$D/stories260K-f32" | grep -q 'nan 0  +inf 0' || fail "--stats"
"$Q" inspect --stats --json "$D/stories260K-bf16" | grep -q '"beyond_6sigma"' || fail "--stats --json"
"$Q" inspect /nonexistent 2>/dev/null; [ $? = 2 ] || fail "missing path: want exit 2"
printf 'garbage!' > /tmp/qtool-inspect-bad.safetensors
"$Q" inspect /tmp/qtool-inspect-bad.safetensors 2>/dev/null; rc=$?
rm -f /tmp/qtool-inspect-bad.safetensors
[ $rc = 2 ] || fail "malformed file: exit $rc, want 2"
"$Q" inspect 2>/dev/null; [ $? = 2 ] || fail "no argument: want exit 2"
echo ok
