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
# a Hugging Face cache snapshot: files are symlinks that leave the folder (rule I6)
S=$(mktemp -d); trap 'rm -rf "$S"' EXIT
mkdir "$S/snap"
for f in "$D/stories260K-f32"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$S/snap/"; done
"$Q" inspect "$S/snap" > /dev/null 2>&1; [ $? = 2 ] || fail "symlinked shard accepted without --follow-symlinks"
"$Q" inspect --follow-symlinks --json "$S/snap" | grep -q '"parameters": 260032' || fail "--follow-symlinks"
"$Q" convert --quiet --follow-symlinks "$S/snap" "$S/out" || fail "convert --follow-symlinks"
[ -f "$S/out/model.safetensors" ] && [ ! -L "$S/out/model.safetensors" ] || fail "convert output is not a real file"
echo ok
