#!/usr/bin/env bash
# CLI test of `qtool convert --if-changed`: a second run with the same input
# and options does nothing (exit 0, "is up to date", the output file keeps
# its inode and mtime); a changed option, a changed recipe file, a changed
# input byte at a fingerprinted place or a changed input header converts
# again.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
stamp() { stat -c '%i %y' "$1/model.safetensors"; }

cp -r "$D/stories260K-f32" "$T/in"
# expect_same OUT ARGS...: a run that must do nothing
expect_same() {
  local out=$1; shift
  local before; before=$(stamp "$out")
  "$Q" convert --quiet --if-changed "$@" "$T/in" "$out" 2> "$T/err" || fail "rc $? for $*"
  grep -q "qtool: $out is up to date" "$T/err" || fail "not reported up to date: $* ($(cat "$T/err"))"
  [ "$(stamp "$out")" = "$before" ] || fail "output rewritten although up to date: $*"
}
# expect_redo OUT ARGS...: a run that must convert again
expect_redo() {
  local out=$1; shift
  local before; before=$(stamp "$out")
  sleep 0.01
  "$Q" convert --if-changed "$@" "$T/in" "$out" 2> "$T/err" || fail "rc $? for $*: $(cat "$T/err")"
  grep -q "up to date" "$T/err" && fail "reported up to date although changed: $*"
  [ "$(stamp "$out")" != "$before" ] || fail "output not rewritten: $*"
  "$Q" inspect "$out" > /dev/null || fail "rewritten output not loadable: $*"
}

"$Q" convert --quiet --if-changed "$T/in" "$T/o" || fail "first run (OUT absent)"
[ -f "$T/o/model.safetensors" ] || fail "first run wrote nothing"
expect_same "$T/o"
expect_same "$T/o" --threads 1            # thread count does not change bytes
expect_same "$T/o" --report "$T/r.json"   # nor does a report
# options that change output bytes
expect_redo "$T/o" --block 128
expect_same "$T/o" --block 128
expect_redo "$T/o" --block 128 --no-double-quant
expect_redo "$T/o" --block 128 --no-double-quant --compute-dtype bf16
expect_redo "$T/o" --block 128 --no-double-quant --compute-dtype bf16 --skip '*.mlp.*'
expect_same "$T/o" --block 128 --no-double-quant --compute-dtype bf16 --skip '*.mlp.*'
expect_redo "$T/o" --block 128 --no-double-quant --compute-dtype bf16 --skip '*.mlp.*' --skip x
expect_redo "$T/o" --allow-nonfinite
expect_redo "$T/o" --scheme fp4 --allow-nonfinite
expect_redo "$T/o"
# a recipe: its content counts, not its name
printf '{"rules": [{"match": "*.mlp.down_proj.weight", "scheme": "keep"}]}\n' > "$T/recipe.json"
expect_redo "$T/o" --recipe "$T/recipe.json"
expect_same "$T/o" --recipe "$T/recipe.json"
printf '{"rules": [{"match": "*.mlp.up_proj.weight", "scheme": "keep"}]}\n' > "$T/recipe.json"
expect_redo "$T/o" --recipe "$T/recipe.json"
expect_redo "$T/o"
# the shard layout
"$Q" convert --quiet --if-changed --max-shard-size 100K "$T/in" "$T/sh" || fail "sharded first run"
"$Q" convert --quiet --if-changed --max-shard-size 100K "$T/in" "$T/sh" 2> "$T/err" || fail "sharded second run"
grep -q "up to date" "$T/err" || fail "sharded: not up to date"
"$Q" convert --quiet --if-changed --max-shard-size 200K "$T/in" "$T/sh" 2> "$T/err" || fail "sharded third run"
grep -q "up to date" "$T/err" && fail "sharded: other shard size reported up to date"
# the input: a data byte at a fingerprinted place (the first data byte)
f="$T/in/model.safetensors"
hs=$(od -An -tu8 -N8 "$f" | tr -d ' ')
off=$((8 + hs))
orig=$(od -An -tx1 -j "$off" -N1 "$f" | tr -d ' ')
new=$(printf '%02x' $(( (0x$orig + 1) % 256 )))
printf "\\x$new" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
expect_redo "$T/o"
expect_same "$T/o"
touch "$f"                                # mtime alone is not a change
expect_same "$T/o"
# the input's header: the same data rewritten with other metadata
"$Q" convert --quiet --scheme fp32 "$T/in" "$T/plain1" || fail "plain1"
rm -rf "$T/in" && cp -r "$T/plain1" "$T/in"
expect_redo "$T/o"
"$Q" convert --quiet --force --scheme fp32 --skip nothing "$T/plain1" "$T/plain2" || fail "plain2"
cmp -s "$T/plain1/model.safetensors" "$T/plain2/model.safetensors" && fail "plain2 header unchanged"
rm -rf "$T/in" && cp -r "$T/plain2" "$T/in"
expect_redo "$T/o"
expect_same "$T/o"
# OUT exists but is not a qtool output: refused (exit 2), nothing of it lost (issue 12 item 1)
rm -rf "$T/o2" && mkdir "$T/o2" && echo x > "$T/o2/junk"
"$Q" convert --quiet --if-changed "$T/in" "$T/o2" 2>"$T/err"; rc=$?
[ $rc = 2 ] && grep -q "holds 'junk'" "$T/err" || fail "foreign OUT: rc $rc: $(cat "$T/err")"
[ -f "$T/o2/junk" ] && [ ! -e "$T/o2/model.safetensors" ] || fail "foreign OUT touched"
# an empty OUT holds nothing to lose: converted
rm -rf "$T/o2" && mkdir "$T/o2"
"$Q" convert --quiet --if-changed "$T/in" "$T/o2" || fail "empty OUT"
[ -f "$T/o2/model.safetensors" ] || fail "empty OUT not converted"
ls -a "$T" | grep -q 'qtool-tmp' && fail "temporary folder left behind"
echo ok
