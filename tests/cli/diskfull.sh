#!/usr/bin/env bash
# Disk full and write errors during `qtool convert` (issue 8): the
# conversion must fail with exit 1 and a message that says what failed,
# and leave nothing behind: no OUT, no temporary folder beside it.
#  1. injected write failure, no root needed: RLIMIT_FSIZE (ulimit -f 256,
#     i.e. 256 KiB per file) with SIGXFSZ ignored, so that write() fails
#     with EFBIG as on a full disk instead of killing the process;
#  2. a real full filesystem: a 300 KiB tmpfs, then a tmpfs with room for
#     model.safetensors but not for config.json and the tokenizer files
#     written after it (root and mount permission needed; skipped
#     otherwise).
# A control run without the limit must succeed, so a failure above is due
# to the limit. Exit 77 only when nothing could run.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models/stories260K-f32
[ -d "$D" ] || { echo "skipped: $D is absent"; exit 77; }
T=$(mktemp -d)
MNT=""
cleanup() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# the output must not fit in 256 KiB: int8 of stories260K is about 400 KB
mkdir -p "$T/control"
"$Q" convert --quiet --scheme int8 "$D" "$T/control/out" 2>"$T/err" || fail "control conversion failed: $(cat "$T/err")"
size=$(du -sk "$T/control/out" | cut -f1)
[ "$size" -gt 300 ] || fail "control output is only ${size} KiB: the limits below would not bite"

check_failed() { # $1 = exit code, $2 = stderr file, $3 = output folder, $4 = what
  [ "$1" = 1 ] || fail "$4: exit $1, expected 1; stderr: $(cat "$2")"
  grep -q '^qtool: error: ..*' "$2" || fail "$4: no error message: $(cat "$2")"
  grep -qiE 'space|too large|write|disk|quota|EFBIG|ENOSPC' "$2" || fail "$4: the message does not say that writing failed: $(cat "$2")"
  [ -z "$(ls -A "$3")" ] || fail "$4: left behind in $3: $(ls -A "$3")"
  echo "$4: exit 1, '$(head -1 "$2")', nothing left"
}

# 1. RLIMIT_FSIZE
mkdir -p "$T/fsize"
( trap '' XFSZ; ulimit -f 256; exec "$Q" convert --quiet --scheme int8 "$D" "$T/fsize/out" ) 2>"$T/err1"
check_failed $? "$T/err1" "$T/fsize" "RLIMIT_FSIZE 256 KiB"

# 2. a full tmpfs
mkdir -p "$T/mnt"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=300k qtool-diskfull "$T/mnt" 2>/dev/null; then
  MNT="$T/mnt"
  "$Q" convert --quiet --scheme int8 "$D" "$T/mnt/out" 2>"$T/err2"
  check_failed $? "$T/err2" "$T/mnt" "tmpfs 300 KiB"
  umount "$T/mnt"
  # 3. room for the weights but not for the files copied after them
  w=$(( ($(stat -c %s "$T/control/out/model.safetensors") + 4095) / 4096 * 4 + 8 ))
  mount -t tmpfs -o size=${w}k qtool-diskfull "$T/mnt" || fail "second mount"
  "$Q" convert --quiet --scheme int8 "$D" "$T/mnt/out" 2>"$T/err3"
  check_failed $? "$T/err3" "$T/mnt" "tmpfs ${w} KiB (weights fit, the rest not)"
else
  echo "tmpfs part skipped: mount not permitted"
fi
exit 0
