#!/usr/bin/env bash
# Issue 12 items 3 and 7 (docs/RELIABILITY.md, "Careless and hostile use"):
#  3. the input truncated while convert, dequant, inspect --stats or generate reads it
#     (SIGBUS on the mapping before): "changed while it was read", exit 1,
#     no OUT, no temporary folder;
#  7. threads that cannot be created (ulimit -u as an unprivileged user, a
#     temporary one made with useradd; ulimit -v): the run goes on with the
#     threads it could start, saying so, or fails with a qtool message;
#     never libgomp's message alone, never a temporary folder left.
# The input is a synthetic ~135 MB fp32 model (qtool bench synth), made once.
set -u
. "$(dirname "$0")/lib/reliability.bash"
Q=$(cd "$(dirname "$Q")" && pwd)/$(basename "$Q")
T=$(mktemp -d); chmod 755 "$T"
U=""
cleanup() { [ -n "$U" ] && userdel "$U" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

"$Q" bench synth "$T/big" --hidden 1024 --intermediate 2816 --layers 2 --heads 16 --kv-heads 16 \
  --vocab 4096 --dtype fp32 > /dev/null 2>&1 || fail "bench synth"
cp "$T/big/model.safetensors" "$T/orig.safetensors"

# shrink IN/model.safetensors to 1 MB once PID is reading it (WAIT_FOR appears
# in $T, or, without WAIT_FOR, 0.1 s after PID has mapped the file), then
# wait for PID; its exit code in rc
shrink_during() {
  local pid=$1 in=$2 wait_for=$3
  for _ in $(seq 1 5000); do
    if [ -n "$wait_for" ]; then ls -a "$T" | grep -q "$wait_for" && break
    elif grep -q "$in/model.safetensors" "/proc/$pid/maps" 2>/dev/null; then sleep 0.1; break; fi
    sleep 0.002
  done
  kill -0 "$pid" 2>/dev/null || echo "note: finished before the input was cut" >&2
  truncate -s 1M "$in/model.safetensors"
  wait "$pid"; rc=$?
}
restore() { cp "$T/orig.safetensors" "$T/big/model.safetensors"; }

# 3a. convert
for i in 1 2; do
  "$Q" convert --quiet --threads 1 "$T/big" "$T/o" 2> "$T/err" & pid=$!
  shrink_during $pid "$T/big" '^\.o\.qtool-tmp'
  [ "$rc" = 1 ] && grep -q "input '$T/big/model.safetensors' changed while it was read" "$T/err" \
    || fail "convert: exit $rc: $(cat "$T/err")"
  [ ! -e "$T/o" ] || fail "convert: OUT written"; no_tmp "$T"
  restore
done
# 3b. dequant (its input: a q8 conversion, cut while dequant reads it)
"$Q" convert --quiet --scheme q8 "$T/big" "$T/q" || fail "convert q8"
cp "$T/q/model.safetensors" "$T/q8.safetensors"
"$Q" dequant --quiet --threads 1 --dtype fp32 "$T/q" "$T/d" 2> "$T/err" & pid=$!
shrink_during $pid "$T/q" '^\.d\.qtool-tmp'
[ "$rc" = 1 ] && grep -q "input '$T/q/model.safetensors' changed while it was read" "$T/err" \
  || fail "dequant: exit $rc: $(cat "$T/err")"
[ ! -e "$T/d" ] || fail "dequant: OUT written"; no_tmp "$T"
# 3c. inspect --stats
"$Q" inspect --stats --threads 1 "$T/big" > /dev/null 2> "$T/err" & pid=$!
shrink_during $pid "$T/big" ''
[ "$rc" = 1 ] && grep -q "input '$T/big/model.safetensors' changed while it was read" "$T/err" \
  || fail "inspect --stats: exit $rc: $(cat "$T/err")"
restore
# 3d. generate (the forward pass reads the mapped weights at every token)
"$Q" generate --ids -n 64 --threads 1 "$T/big" > /dev/null 2> "$T/err" & pid=$!
shrink_during $pid "$T/big" ''
[ "$rc" = 1 ] && grep -q "input '$T/big/model.safetensors' changed while it was read" "$T/err" \
  || fail "generate: exit $rc: $(cat "$T/err")"
restore

# 7a. ulimit -v: as many threads as fit, or a qtool error; nothing left behind
# (not under ASan, whose shadow memory needs more address space than any limit)
if [ "${SAN:-0}" = 1 ]; then echo "skipped the ulimit -v part: sanitizer build"; else
( ulimit -v 600000; exec "$Q" convert --quiet --threads 200 "$T/big" "$T/v" ) 2> "$T/err"; rc=$?
grep -q "libgomp" "$T/err" && fail "ulimit -v: libgomp's message: $(cat "$T/err")"
[ $rc = 0 ] && grep -q "warning: could start only" "$T/err" || { [ $rc = 1 ] && grep -q "^qtool: error:" "$T/err"; } \
  || fail "ulimit -v: exit $rc: $(cat "$T/err")"
no_tmp "$T"; rm -rf "$T/v"
fi
# 7b. ulimit -u 1 as an unprivileged user (not under ASan: LeakSanitizer needs a thread at exit)
if [ "${SAN:-0}" = 1 ]; then echo "skipped the ulimit -u part: sanitizer build"; echo ok; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v useradd > /dev/null || ! command -v runuser > /dev/null; then
  echo "skipped the ulimit -u part: needs root, useradd and runuser"; echo ok; exit 0
fi
U=qtrel$$
useradd -M -s /bin/bash "$U" 2> /dev/null || { U=""; echo "skipped the ulimit -u part: useradd failed"; echo ok; exit 0; }
mkdir "$T/w" && chmod 777 "$T/w"; chmod -R a+rX "$T/big"
runuser -u "$U" -- bash -c "ulimit -u 1; exec '$Q' convert --quiet --threads 4 '$T/big' '$T/w/o'" 2> "$T/err"; rc=$?
[ $rc = 0 ] && grep -q "warning: could start only 1 of 4 threads" "$T/err" && ! grep -q libgomp "$T/err" \
  || fail "ulimit -u 1: exit $rc: $(cat "$T/err")"
[ -f "$T/w/o/model.safetensors" ] || fail "ulimit -u 1: no output"
no_tmp "$T/w"
echo ok
