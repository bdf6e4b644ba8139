#!/usr/bin/env bash
# Interruption test of `qtool convert` on a synthetic model (qtool bench
# synth, ~300 MB bf16): SIGKILL at several points never leaves a partial
# OUT (absent, or complete and loadable by `qtool inspect`); the stale
# temporary folder a SIGKILL leaves is removed by the next run; SIGINT and
# SIGTERM remove the temporary folder and exit non-zero with a message.
set -u
Q=${QTOOL:-build/qtool}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# the input (one retry: a CI run under ASan once failed here without a message,
# not reproduced in 7 runs since; the message is now printed)
synth() {
  rm -rf "$T/in"
  "$Q" bench synth "$T/in" --hidden 1024 --intermediate 2816 --layers 8 --heads 16 --kv-heads 4 \
    --vocab 32000 --dtype bf16 --seed 7 2>"$T/synth.err"
}
synth || { cat "$T/synth.err"; synth; } || fail "bench synth: $(cat "$T/synth.err")"

# OUT must be absent or complete
check_out() {
  if [ -e "$T/out" ]; then
    "$Q" inspect "$T/out" > /dev/null 2>&1 || fail "$1: partial OUT left behind"
    [ -f "$T/out/config.json" ] || fail "$1: OUT without config.json"
    rm -rf "$T/out"
  fi
}

# SIGKILL at several points
killed=0
for d in 0.05 0.2 0.5 0.8 1.2; do
  "$Q" convert --quiet "$T/in" "$T/out" 2>/dev/null &
  pid=$!
  sleep "$d"
  kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$pid" 2>/dev/null
  check_out "kill -9 after ${d}s"
done
[ "$killed" -ge 2 ] || fail "convert finished before the kills ($killed killed): model too small?"
ls -a "$T" | grep -q '^\.out\.qtool-tmp\.' || echo "note: no stale temporary folder left by the kills"

# a later run removes the stale temporary folders of dead processes, not of live ones
mkdir "$T/.out.qtool-tmp.999999999" "$T/.out.qtool-tmp.$$"      # a dead pid, and this shell
"$Q" convert --quiet "$T/in" "$T/out" || fail "convert after kills"
"$Q" inspect "$T/out" > /dev/null || fail "OUT not loadable"
[ -e "$T/.out.qtool-tmp.999999999" ] && fail "stale temporary folder of a dead pid not removed"
[ -e "$T/.out.qtool-tmp.$$" ] || fail "temporary folder of a live process removed"
rmdir "$T/.out.qtool-tmp.$$"
ls -a "$T" | grep -q 'qtool-tmp' && fail "stale temporary folders remain: $(ls -a "$T")"
rm -rf "$T/out"

# SIGINT / SIGTERM: clean exit, non-zero, message, nothing left
for sig in INT TERM; do
  done_ok=0
  for d in 0.3 0.1 0.02; do
    "$Q" convert --quiet "$T/in" "$T/out" 2> "$T/err" &
    pid=$!
    sleep "$d"
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid"; rc=$?
    if [ "$rc" = 0 ]; then check_out "SIG$sig after ${d}s (finished first)"; continue; fi
    [ -e "$T/out" ] && fail "SIG$sig: OUT exists after an interrupted run"
    ls -a "$T" | grep -q 'qtool-tmp' && fail "SIG$sig: temporary folder left: $(ls -a "$T")"
    # killed by the signal before the handler was set up (rc 128+n) is
    # fine too; a handled one says so
    if [ "$rc" -lt 128 ]; then
      grep -q 'interrupted' "$T/err" || fail "SIG$sig: no message (rc $rc): $(cat "$T/err")"
      done_ok=1
      break
    fi
  done
  [ "$done_ok" = 1 ] || fail "SIG$sig: never caught an interrupted run"
done
echo ok
