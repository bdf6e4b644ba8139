# Helpers shared by tests/cli/reliability_*.sh (sourced; not a test itself:
# tests/run.sh runs only tests/cli/*.sh). The caller sets T (its temporary
# folder, where stderr is kept) before calling expect.
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}

fail() { echo "FAIL: $*"; exit 1; }

# need_data: M (the sample model, absolute) and TXT (a text), or skip (exit 77)
need_data() {
  M=$(cd "$D/models/stories260K-f32" 2>/dev/null && pwd)
  [ -n "$M" ] || { echo "skipped: $D/models/stories260K-f32 is absent"; exit 77; }
  TXT=$D/text/tinystories_sample.txt
  [ -f "$TXT" ] || { echo "skipped: $TXT is absent"; exit 77; }
}

# expect RC PATTERN CMD...: CMD exits RC within 60 s (a hang fails) with
# PATTERN (grep) on stderr
expect() {
  local rc=$1 pat=$2; shift 2
  timeout 60 "$@" > /dev/null 2> "$T/err"; local got=$?
  [ "$got" = "$rc" ] || fail "exit $got, not $rc: $* ($(cat "$T/err"))"
  grep -q -- "$pat" "$T/err" || fail "no '$pat' in: $(cat "$T/err")"
}

# no_tmp DIR: no qtool temporary folder was left in DIR
no_tmp() { ! ls -a "$1" | grep -q 'qtool-tmp' || fail "temporary folder left in $1"; }
