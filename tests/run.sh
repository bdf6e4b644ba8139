#!/usr/bin/env bash
# Runs every test: the Criterion unit tests (build/tests/test_*), the CLI
# tests (tests/cli/*.sh: exit 0 pass, 77 skip, other fail) and the fuzz
# corpus replays (build/tests/replay_*). Ends with one line
# "N passed, N failed, N skipped" and a non-zero exit if anything failed.
set -u
BUILD=${BUILD:-build}
export QT_DATA=${DATA:-../shared/data}
export QTOOL="$PWD/$BUILD/qtool"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
pass=0 fail=0 skip=0 failed_names=""
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" --jobs 2 --verbose 2>&1); rc=$?
  syn=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -1)
  tested=$(printf '%s' "$syn" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
  passing=$(printf '%s' "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  failing=$(printf '%s' "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  crashing=$(printf '%s' "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  skipped=$(printf '%s\n' "$out" | grep -c '\[SKIP\]')
  if [ -z "$tested" ]; then
    echo "FAIL $(basename "$t"): no synthesis line (rc=$rc)"; printf '%s\n' "$out" | tail -20
    fail=$((fail+1)); failed_names="$failed_names $(basename "$t")"; continue
  fi
  pass=$((pass+passing)); fail=$((fail+failing+crashing)); skip=$((skip+skipped))
  if [ "$rc" != 0 ] || [ "$((failing+crashing))" != 0 ]; then
    printf '%s\n' "$out" | grep -vE '^\[----\] *$' | tail -40
    failed_names="$failed_names $(basename "$t")"
    [ "$((failing+crashing))" = 0 ] && fail=$((fail+1))
  fi
  echo "$(basename "$t"): $passing passed, $((failing+crashing)) failed, $skipped skipped"
done
for t in tests/cli/*.sh; do
  [ -f "$t" ] || continue
  out=$(bash "$t" 2>&1); rc=$?
  name=$(basename "$t" .sh)
  if [ $rc = 0 ]; then pass=$((pass+1)); echo "cli/$name: ok"
  elif [ $rc = 77 ]; then skip=$((skip+1)); echo "cli/$name: skipped: $(printf '%s\n' "$out" | tail -1)"
  else fail=$((fail+1)); failed_names="$failed_names cli/$name"; echo "cli/$name: FAILED"; printf '%s\n' "$out" | tail -30; fi
done
for r in "$BUILD"/tests/replay_*; do
  [ -x "$r" ] || continue
  name=${r##*/replay_}
  corpus=tests/fuzz/corpus/$name
  [ -d "$corpus" ] || { echo "replay $name: no corpus"; continue; }
  if out=$("$r" "$corpus" 2>&1); then pass=$((pass+1)); echo "replay $name: $(printf '%s' "$out" | tail -1)"
  else fail=$((fail+1)); failed_names="$failed_names replay_$name"; echo "replay $name: FAILED"; printf '%s\n' "$out" | tail -20; fi
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
